"""PDF rendering, pure Python on reportlab: no system libraries, so `make test` runs on a fresh machine.

``document_to_pdf`` lays out a plain document model (headings, paragraphs, tables) straight onto
reportlab's canvas: text wrapped with reportlab's own metrics, table rows split across pages with the
header row repeated. It is what the casebook PDF uses: the demo's largest casebook (about 200 events)
renders in a fraction of a second, where the same content through HTML -> xhtml2pdf took 3-12 s
(bench/casebook_pdf.py measures both in one run). ``html_to_pdf`` (xhtml2pdf) stays for any HTML page
and as that benchmark's baseline.

Fonts: DejaVu Sans when the system has it (Cyrillic and the rest of Unicode: names and sites at Minsk
read as written); otherwise Helvetica, whose encoding (Latin-1) shows other letters as "?".

The document model, a list of blocks (tuples), so that the application needs no PDF library:
- ``("title", text)``, ``("heading", text)``, ``("subheading", text)``
- ``("text", text, style)`` with style ``"normal"``, ``"small"``, ``"bold"`` or ``"alert"``
- ``("table", [(column header, relative width), ...], [[cell text, ...], ...])``
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence
from typing import Any


class PdfRenderError(RuntimeError):
    pass


def html_to_pdf(html: str) -> bytes:
    from xhtml2pdf import pisa

    out = io.BytesIO()
    result = pisa.CreatePDF(src=html, dest=out, encoding="utf-8")
    if result.err:
        raise PdfRenderError(f"the casebook could not be rendered as PDF ({result.err} errors)")
    return out.getvalue()


_FONT_CANDIDATES = (
    ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
    ("/usr/share/fonts/TTF/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans-Bold.ttf"),
    ("/Library/Fonts/DejaVuSans.ttf", "/Library/Fonts/DejaVuSans-Bold.ttf"),
)
_fonts: tuple[str, str, bool] | None = None


def fonts() -> tuple[str, str, bool]:
    """(regular, bold, unicode): DejaVu Sans registered once if present, else Helvetica."""
    global _fonts
    if _fonts is None:
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfbase.ttfonts import TTFont

        _fonts = ("Helvetica", "Helvetica-Bold", False)
        for regular, bold in _FONT_CANDIDATES:
            if os.path.exists(regular) and os.path.exists(bold):
                try:
                    pdfmetrics.registerFont(TTFont("TA-Sans", regular))
                    pdfmetrics.registerFont(TTFont("TA-Sans-Bold", bold))
                except Exception:  # pragma: no cover - a broken font file: fall back
                    continue
                _fonts = ("TA-Sans", "TA-Sans-Bold", True)
                break
    return _fonts


class _Layout:
    MARGIN = 28.0
    SIZES = {"title": 14.0, "heading": 11.5, "subheading": 9.5, "text": 8.0, "small": 6.8, "table": 6.6}

    def __init__(self, title: str):
        from reportlab.lib.pagesizes import A4, landscape
        from reportlab.lib.utils import simpleSplit
        from reportlab.pdfgen.canvas import Canvas

        self.buffer = io.BytesIO()
        self.width, self.height = landscape(A4)
        self.canvas = Canvas(self.buffer, pagesize=(self.width, self.height), pageCompression=1)
        self.canvas.setTitle(title)
        self.canvas.setCreator("trialaudit")
        self.regular, self.bold, self.unicode = fonts()
        self.split = simpleSplit
        self.title = title
        self.page = 1
        self.y = self.height - self.MARGIN
        self.usable = self.width - 2 * self.MARGIN

    def clean(self, text: Any) -> str:
        text = "" if text is None else str(text)
        return text if self.unicode else text.encode("latin-1", "replace").decode("latin-1")

    def footer(self) -> None:
        c = self.canvas
        c.setFont(self.regular, 6.5)
        c.setFillGray(0.35)
        c.drawString(self.MARGIN, self.MARGIN / 2, self.clean(self.title))
        c.drawRightString(self.width - self.MARGIN, self.MARGIN / 2, f"page {self.page}")
        c.setFillGray(0)

    def new_page(self) -> None:
        self.footer()
        self.canvas.showPage()
        self.page += 1
        self.y = self.height - self.MARGIN

    def room(self, needed: float) -> None:
        if self.y - needed < self.MARGIN:
            self.new_page()

    def lines(self, text: str, font: str, size: float, width: float) -> list[str]:
        out: list[str] = []
        for part in self.clean(text).split("\n"):
            out.extend(self.split(part, font, size, width) or [""])
        return out

    def paragraph(self, text: str, font: str, size: float, before: float = 0.0, gray: float = 0.0,
                  rgb: tuple[float, float, float] | None = None) -> None:
        leading = size * 1.25
        self.y -= before
        for line in self.lines(text, font, size, self.usable):
            self.room(leading)
            self.canvas.setFont(font, size)
            if rgb:
                self.canvas.setFillColorRGB(*rgb)
            else:
                self.canvas.setFillGray(gray)
            self.canvas.drawString(self.MARGIN, self.y - size, line)
            self.y -= leading
        self.canvas.setFillGray(0)

    def rule(self) -> None:
        self.canvas.setLineWidth(0.6)
        self.canvas.line(self.MARGIN, self.y + 1, self.width - self.MARGIN, self.y + 1)
        self.y -= 2

    def table(self, columns: Sequence[tuple[str, float]], rows: Iterable[Sequence[Any]]) -> None:
        size = self.SIZES["table"]
        leading, pad = size * 1.2, 2.0
        total = sum(w for _, w in columns) or 1.0
        widths = [self.usable * w / total for _, w in columns]
        c = self.canvas

        def measure(cells: Sequence[Any], font: str) -> tuple[list[list[str]], float]:
            wrapped = [self.lines(cell, font, size, w - 2 * pad) for cell, w in zip(cells, widths)]
            return wrapped, max(len(w) for w in wrapped) * leading + 2 * pad

        header, header_height = measure([h for h, _ in columns], self.bold)
        max_lines = int((self.height - 2 * self.MARGIN - header_height - 2 * pad) / leading)

        def draw(wrapped: list[list[str]], height: float, font: str, shaded: bool) -> None:
            x = self.MARGIN
            c.setLineWidth(0.4)
            c.setStrokeGray(0.55)
            for lines, w in zip(wrapped, widths):
                if shaded:
                    c.setFillGray(0.91)
                    c.rect(x, self.y - height, w, height, stroke=1, fill=1)
                    c.setFillGray(0)
                else:
                    c.rect(x, self.y - height, w, height, stroke=1, fill=0)
                if lines:
                    t = c.beginText(x + pad, self.y - pad - size)
                    t.setFont(font, size, leading)
                    t.textLines(lines)
                    c.drawText(t)
                x += w
            self.y -= height

        self.room(header_height + leading + 2 * pad)
        draw(header, header_height, self.bold, True)
        for row in rows:
            wrapped, height = measure(row, self.regular)
            while True:
                if self.y - height < self.MARGIN:
                    self.new_page()
                    draw(header, header_height, self.bold, True)
                longest = max(len(w) for w in wrapped)
                if longest <= max_lines:
                    draw(wrapped, height, self.regular, False)
                    break
                # a row taller than a page: draw a page of it, continue on the next
                draw([w[:max_lines] for w in wrapped], max_lines * leading + 2 * pad, self.regular, False)
                wrapped = [w[max_lines:] for w in wrapped]
                height = max(len(w) for w in wrapped) * leading + 2 * pad
        self.y -= 4

    def finish(self) -> bytes:
        self.footer()
        self.canvas.save()
        return self.buffer.getvalue()


def document_to_pdf(blocks: Iterable[Sequence[Any]], *, title: str) -> bytes:
    """Render the document model (see the module docstring) as a PDF, A4 landscape."""
    layout = _Layout(title)
    try:
        for block in blocks:
            kind = block[0]
            if kind == "title":
                layout.paragraph(block[1], layout.bold, layout.SIZES["title"], before=2)
                layout.y -= 4
            elif kind == "heading":
                layout.room(60)
                layout.paragraph(block[1], layout.bold, layout.SIZES["heading"], before=8)
                layout.rule()
            elif kind == "subheading":
                layout.room(40)
                layout.paragraph(block[1], layout.bold, layout.SIZES["subheading"], before=5)
            elif kind == "text":
                style = block[2] if len(block) > 2 else "normal"
                font = layout.bold if style == "bold" else layout.regular
                size = layout.SIZES["small" if style == "small" else "text"]
                layout.paragraph(block[1], font, size, before=1.5, gray=0.25 if style == "small" else 0.0,
                                 rgb=(0.66, 0, 0) if style == "alert" else None)
            elif kind == "table":
                layout.table(block[1], block[2])
            else:
                raise PdfRenderError(f"unknown block {kind!r}")
        return layout.finish()
    except PdfRenderError:
        raise
    except Exception as e:  # reportlab errors: one kind for the caller
        raise PdfRenderError(f"the document could not be rendered as PDF: {e}") from e
