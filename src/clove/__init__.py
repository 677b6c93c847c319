"""Clove: a self-hosted sales CRM server that speaks the Close CRM REST API."""

__version__ = "0.1.0"
