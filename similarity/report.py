"""What the signed report says about similar confirmed lesions: their diagnoses and distances, per image.

No images and no patient data: a report leaves the platform. The reports area calls ``similar_for_report`` by
name (``cases.reports.services``; it sits below this app), and prints the rows with
``templates/similarity/_report_similar.html``.
"""

from cases.models import Case
from similarity.search import similar_for_case


def similar_for_report(case: Case) -> list[tuple[int, tuple[tuple[str, str, float], ...]]]:
    """(image position, ((diagnosis, where it comes from, cosine distance), ...)) for each image with
    similar lesions; the library is the case's own organization and the reference sets."""
    rows = []
    for image in similar_for_case(case).images:
        found = tuple(
            (
                lesion.diagnosis + (" (malignant)" if lesion.malignant else ""),
                f"reference set {lesion.source}" if lesion.kind == "reference" else "reviewed case",
                float(lesion.distance),
            )
            for lesion in image.lesions
        )
        if found:
            rows.append((image.position, found))
    return rows
