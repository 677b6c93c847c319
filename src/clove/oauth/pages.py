"""The HTML of /oauth2/authorize/: one approval form and one error page, no scripts."""

from __future__ import annotations

from html import escape

from starlette.responses import HTMLResponse

from clove.oauth.schemas import AuthorizeRequest
from clove.oauth.service import OFFLINE_ACCESS

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    # The form takes an API key: it must not be framed (clickjacking) nor leak its URL onward.
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
}

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}"
    "input[type=password]{width:100%;padding:.4rem;margin:.4rem 0 1rem}"
    "button{padding:.4rem 1.2rem;margin-right:.5rem}.error{color:#b00020}"
)


def _document(title: str, body: str, status_code: int) -> HTMLResponse:
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status_code, headers=PAGE_HEADERS)


def approval_page(
    app_name: str, params: AuthorizeRequest, granted_scope: str, *, error: str = ""
) -> HTMLResponse:
    """The form that asks the user to approve `app_name`, re-shown with `error` after a bad key."""
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{escape(value)}">'
        for name, value in params.model_dump().items()
    )
    offline = (
        " It may keep this access while you are away." if OFFLINE_ACCESS in granted_scope else ""
    )
    notice = f'<p class="error">{escape(error)}</p>' if error else ""
    body = (
        f"<h1>Authorize {escape(app_name)}</h1>"
        f"<p><strong>{escape(app_name)}</strong> asks for full access to your Clove "
        f"organization, acting as you.{offline}</p>{notice}"
        # No action attribute: the form posts back to this same URL.
        f'<form method="post">{hidden}'
        '<label for="api_key">Confirm who you are with one of your Clove API keys</label>'
        '<input type="password" id="api_key" name="api_key" autocomplete="off" required>'
        '<button type="submit" name="decision" value="approve">Approve</button>'
        '<button type="submit" name="decision" value="deny" formnovalidate>Deny</button>'
        "</form>"
    )
    return _document(f"Authorize {app_name}", body, 400 if error else 200)


def error_page(message: str) -> HTMLResponse:
    """Why the user cannot be sent back to the application (it stays on Clove)."""
    body = (
        "<h1>Authorization failed</h1>"
        f'<p class="error">{escape(message)}</p>'
        "<p>Tell the application's developer; you were not sent back to the application.</p>"
    )
    return _document("Authorization failed", body, 400)
