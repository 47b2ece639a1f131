"""Example actions: outbound HTTP with rekuest_guest.http (the Python twin of examples/http),
allowed only to granted origins (`--http ORIGIN`)."""

from rekuest_guest import ActionError, http, register, task_token


@register
def fetch_text(url: str) -> str:
    """Fetch a URL as text.

    Args:
        url: an http:// or https:// URL on a granted origin
    """
    try:
        return http.get(url).raise_for_status().text
    except http.HTTPError as error:
        raise ActionError(str(error)) from None


@register
def describe_image(url: str) -> str:
    """Load an image's metadata as JSON and name it.

    Args:
        url: the metadata's URL, answering {"name": ..., "width": ..., "height": ...}
    """
    try:
        meta = http.get(url, headers={"accept": "application/json"}).raise_for_status().json()
        pixels = http.get(url + "/data").raise_for_status().content
    except http.HTTPError as error:
        raise ActionError(str(error)) from None
    return f"{meta['name']} ({meta['width']}x{meta['height']}, {len(pixels)} bytes)"


@register
def provenance() -> str:
    """The task's provenance token, or an empty string."""
    return task_token() or ""
