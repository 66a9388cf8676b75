"""HTML -> PDF with xhtml2pdf (pure Python on reportlab): no system libraries, so `make test` runs on a
fresh machine (WeasyPrint would need Pango/Cairo; wkhtmltopdf a binary)."""

from __future__ import annotations

import io


class PdfRenderError(RuntimeError):
    pass


def html_to_pdf(html: str) -> bytes:
    from xhtml2pdf import pisa

    out = io.BytesIO()
    result = pisa.CreatePDF(src=html, dest=out, encoding="utf-8")
    if result.err:
        raise PdfRenderError(f"the casebook could not be rendered as PDF ({result.err} errors)")
    return out.getvalue()
