"""Reads of the learning loop: how the AI agreed with dermatologists, per model version and organization.

The dermatologist's malignant call on the current (not superseded) review is the reference; the AI's call is
the case risk at the model version's threshold. One query fetches the rows, the statistics are computed in
memory, so the number of SQL queries does not grow with the number of cases.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from django.db.models import Q
from django.utils import timezone

from cases.models import CaseStatus, Organization, Review, User
from inference.models import ModelVersion

DEFAULT_PERIOD_DAYS = 90
MAX_MISSES_LISTED = 200


@dataclass(frozen=True)
class Miss:
    """A case the AI called low risk that the dermatologist called malignant: the errors that matter."""

    case_id: int
    organization: str
    risk: float
    risk_band: str
    diagnosis: str
    reviewed_at: dt.datetime


@dataclass
class Agreement:
    model_version_id: int | None
    model_version: str
    organization_id: int
    organization: str
    threshold: float | None
    cases: int = 0
    assessed: int = 0
    not_assessed: int = 0
    true_positive: int = 0
    false_negative: int = 0
    false_positive: int = 0
    true_negative: int = 0
    sensitivity: float | None = None
    sensitivity_ci95: list[float] | None = None
    specificity: float | None = None
    specificity_ci95: list[float] | None = None
    auc: float | None = None
    ece: float | None = None
    mean_risk: float | None = None
    malignant_rate: float | None = None
    not_assessed_rate: float | None = None
    misses: list[Miss] = field(default_factory=list)


@dataclass(frozen=True)
class AgreementFilters:
    since: dt.datetime
    until: dt.datetime
    organization_id: int | None = None
    model_version_id: int | None = None


def default_filters(
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    organization_id: int | None = None,
    model_version_id: int | None = None,
) -> AgreementFilters:
    until = until or timezone.now()
    return AgreementFilters(
        since=since or until - dt.timedelta(days=DEFAULT_PERIOD_DAYS),
        until=until,
        organization_id=organization_id,
        model_version_id=model_version_id,
    )


def can_view_agreement(user: User) -> bool:
    """Dermatologists (their organizations) and platform administrators (all) see the agreement figures."""
    return user.is_authenticated and (user.is_platform_admin or user.is_dermatologist)


def _rows(*, user: User, filters: AgreementFilters):
    reviews = Review.objects.filter(
        superseded_by__isnull=True,
        case__status__in=(CaseStatus.REVIEWED, CaseStatus.REPORTED),
        case__analysed_at__isnull=False,
        created_at__gte=filters.since,
        created_at__lt=filters.until,
    )
    if not user.is_platform_admin:
        reviews = reviews.filter(case__organization__in=user.organizations.all())
    if filters.organization_id is not None:
        reviews = reviews.filter(case__organization_id=filters.organization_id)
    if filters.model_version_id is not None:
        reviews = reviews.filter(Q(case__model_version_id=filters.model_version_id))
    # Only ids and the two numbers per row: names and thresholds come once per group (measured: the wide
    # join with names doubled the time at 10,000 cases).
    return reviews.order_by().values_list(
        "pk", "case_id", "case__organization_id", "case__model_version_id", "case__risk", "malignant"
    )


def agreement_table(*, user: User, filters: AgreementFilters) -> list[Agreement]:
    """One row per (model version, organization) with reviewed cases in the period; empty for other roles."""
    if not can_view_agreement(user):
        return []
    rows = list(_rows(user=user, filters=filters))
    versions = ModelVersion.objects.in_bulk({r[3] for r in rows if r[3] is not None})
    organizations = Organization.objects.in_bulk({r[2] for r in rows})
    groups: dict[tuple, Agreement] = {}
    scores: dict[tuple, list[tuple[float, bool]]] = defaultdict(list)
    missed: list[tuple[Agreement, int, int, float]] = []
    for review_id, case_id, org_id, mv_id, risk, malignant in rows:
        key = (mv_id, org_id)
        row = groups.get(key)
        if row is None:
            version = versions.get(mv_id)
            row = groups[key] = Agreement(
                mv_id,
                str(version) if version else "no model",
                org_id,
                organizations[org_id].name,
                version.threshold if version else None,
            )
        row.cases += 1
        threshold = row.threshold
        if risk is None or threshold is None:
            row.not_assessed += 1
            continue
        row.assessed += 1
        flagged = risk >= threshold
        scores[key].append((risk, malignant))
        if malignant and flagged:
            row.true_positive += 1
        elif malignant:
            row.false_negative += 1
            missed.append((row, review_id, case_id, risk))
        elif flagged:
            row.false_positive += 1
        else:
            row.true_negative += 1
    for key, row in groups.items():
        _finish(row, scores.get(key, []))
    _list_misses(missed)
    return sorted(groups.values(), key=lambda r: (r.model_version, r.organization))


def _finish(row: Agreement, pairs: list[tuple[float, bool]]) -> None:
    # Imported here: the metrics are training's pure-numpy ones, and a worker process (which loads the
    # learning tasks) must not load the training package at start (tests/test_architecture.py).
    from training.evaluate import expected_calibration_error, proportion_interval, roc_auc

    positives = row.true_positive + row.false_negative
    negatives = row.false_positive + row.true_negative
    if positives:
        row.sensitivity = row.true_positive / positives
        row.sensitivity_ci95 = proportion_interval(row.true_positive, positives)
    if negatives:
        row.specificity = row.true_negative / negatives
        row.specificity_ci95 = proportion_interval(row.true_negative, negatives)
    row.not_assessed_rate = row.not_assessed / row.cases if row.cases else None
    if pairs:
        risks = np.array([p[0] for p in pairs], dtype=np.float64)
        labels = np.array([p[1] for p in pairs], dtype=bool)
        row.auc = roc_auc(labels, risks)
        row.ece = expected_calibration_error(labels, risks)
        row.mean_risk = float(risks.mean())
        row.malignant_rate = float(labels.mean())


def _list_misses(missed: list[tuple[Agreement, int, int, float]]) -> None:
    """Attach the most recent misses of each row, with the review's diagnosis and date (one more query)."""
    missed.sort(key=lambda m: -m[1])
    kept = []
    per_row: dict[int, int] = defaultdict(int)
    for entry in missed:
        if per_row[id(entry[0])] < MAX_MISSES_LISTED:
            per_row[id(entry[0])] += 1
            kept.append(entry)
    details = Review.objects.select_related("case").in_bulk([m[1] for m in kept]) if kept else {}
    for row, review_id, case_id, risk in kept:
        review = details[review_id]
        row.misses.append(
            Miss(case_id, row.organization, risk, review.case.risk_band, review.diagnosis, review.created_at)
        )
