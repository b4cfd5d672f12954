"""Report pages as PDF, for filing: WeasyPrint lays out the very HTML the browser shows,
with the page's print stylesheet (A4, page numbers, no navigation).

WeasyPrint needs Pango at run time (Debian: libpango-1.0-0, libpangoft2-1.0-0); it is
imported only when a PDF is asked for, so HTML reports work without it.
"""

from __future__ import annotations

import logging
from typing import Final, Literal

PageFormat = Literal["html", "pdf"]
PAGE_FORMATS: Final[tuple[PageFormat, ...]] = ("html", "pdf")
PDF_TYPE: Final = "application/pdf"


# WeasyPrint's CSS parser warns of every SVG presentation property in matplotlib's inline
# styles ("Ignored `fill: #c0392b`, unknown property") although its SVG renderer applies
# them (the colours are in the PDF): hundreds of lines per page that say nothing is wrong.
logging.getLogger("weasyprint").setLevel(logging.ERROR)


class PdfUnavailable(RuntimeError):
    """WeasyPrint cannot load here (its system libraries are missing)."""


def to_pdf(page: str) -> bytes:
    """The page as a PDF document. Nothing is fetched: the pages are self-contained."""
    try:
        from weasyprint import HTML  # heavy, and only for PDFs
    except (ImportError, OSError) as exc:  # OSError: Pango's shared library is missing
        raise PdfUnavailable(
            "PDF reports need Pango (Debian: apt-get install libpango-1.0-0 "
            f"libpangoft2-1.0-0 fonts-dejavu-core): {exc}"
        ) from None

    pdf: bytes = HTML(string=page, base_url=None).write_pdf()
    return pdf
