"""Reading stored reports back in tests."""

import io
import os

from pypdf import PdfReader


def stored_bytes(report) -> bytes:
    with report.file.open("rb") as handle:
        return handle.read()


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(data)).pages)


def file_mode(path) -> int:
    return os.stat(path).st_mode & 0o777
