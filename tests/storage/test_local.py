"""The same report protection on local file storage (the single-machine default)."""

import pytest
from django.core.files.base import ContentFile

from teleder.storage import FileSystemStorage, ProtectedFileError


@pytest.fixture
def storage(tmp_path) -> FileSystemStorage:
    return FileSystemStorage(location=str(tmp_path / "media"))


def test_local_reports_cannot_be_deleted_or_overwritten(storage):
    name = storage.save("reports/3/abc.pdf", ContentFile(b"%PDF signed"))

    with pytest.raises(ProtectedFileError):
        storage.delete(name)
    with pytest.raises(ProtectedFileError):
        storage.save(name, ContentFile(b"%PDF forged"))
    with storage.open(name, "rb") as handle:
        assert handle.read() == b"%PDF signed"


def test_local_images_get_a_new_name_on_clash_and_can_be_deleted(storage):
    first = storage.save("cases/1/a.jpg", ContentFile(b"1"))
    second = storage.save("cases/1/a.jpg", ContentFile(b"2"))
    assert first != second
    storage.delete(second)
    assert storage.exists(first) and not storage.exists(second)
