"""Drift monitoring: alerts on a synthetic shift, stays quiet on the same distribution."""

import datetime as dt

import numpy as np
import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from cases import services
from cases.models import Prediction
from learning import drift
from learning.models import DriftSnapshot
from learning.tasks import check_drift
from tests.support.factories import LesionFactory, PatientFactory, UserFactory
from tests.support.images import upload


def test_psi_and_ks_separate_a_shift_from_the_same_distribution():
    rng = np.random.default_rng(0)
    reference = rng.beta(2, 5, 3000)
    same = rng.beta(2, 5, 3000)
    shifted = rng.beta(5, 2, 3000)
    assert drift.numeric_psi(reference, same) < 0.02
    assert drift.numeric_psi(reference, shifted) > 1.0
    assert drift.ks_statistic(reference, same) < 0.05 < 0.4 < drift.ks_statistic(reference, shifted)
    assert drift.categorical_psi(["a"] * 50 + ["b"] * 50, ["a"] * 48 + ["b"] * 52) < 0.01
    assert drift.categorical_psi(["a"] * 90 + ["b"] * 10, ["a"] * 10 + ["b"] * 90) > 1.0
    edges = np.linspace(0, 1, 11)
    counts, _ = np.histogram(reference, edges)
    assert drift.histogram_psi(edges, counts, same) < 0.02
    assert drift.histogram_psi(edges, counts, shifted) > 1.0


@pytest.fixture
def add_cases(clinician, org, record_analysis):
    def add(n, *, days_ago, probability, size=(64, 48), age=50):
        born = timezone.now().year - age
        lesion = LesionFactory(
            patient=PatientFactory(organization=org, created_by=clinician, year_of_birth=born)
        )
        for i in range(n):
            case = services.case_submit(
                actor=clinician,
                lesion=lesion,
                images=[upload(f"{i}.jpg", width=size[0], height=size[1], seed=i)],
                analyse=False,
            ).case
            record_analysis(case, [probability(i)])
            Prediction.objects.filter(image__case=case).update(
                created_at=timezone.now() - dt.timedelta(days=days_ago, minutes=i)
            )

    return add


def test_a_synthetic_shift_alerts_and_e_mails_admins(add_cases, settings, client):
    settings.TELEDER_DRIFT_MIN_SAMPLES = 10
    admin = UserFactory(role="admin", is_staff=True, email="ops@example.org")
    add_cases(12, days_ago=14, probability=lambda i: 0.05 + i / 200, size=(64, 48), age=60)
    add_cases(12, days_ago=2, probability=lambda i: 0.7 + i / 100, size=(120, 90), age=25)
    result = check_drift.apply().get()
    assert result == {"snapshots": 1, "alerts": 1}
    snapshot = DriftSnapshot.objects.get()
    alerting = {a["feature"] for a in snapshot.alerts}
    assert {"risk", "image_width", "image_height", "age"} <= alerting
    (message,) = mail.outbox
    assert message.to == ["ops@example.org"] and "/learning/drift/" in message.body
    assert "P-" not in message.body  # no patient reference in the e-mail
    client.force_login(admin)
    page = client.get(reverse("drift")).content.decode()
    assert "alert" in page and "image_width" in page


def test_the_same_distribution_stays_quiet(add_cases, settings):
    settings.TELEDER_DRIFT_MIN_SAMPLES = 10
    UserFactory(role="admin", email="ops@example.org")
    add_cases(12, days_ago=14, probability=lambda i: 0.05 + i / 20)
    add_cases(12, days_ago=2, probability=lambda i: 0.05 + i / 20)
    assert check_drift.apply().get() == {"snapshots": 1, "alerts": 0}
    assert not mail.outbox
    assert all(f["psi"] == 0.0 for f in DriftSnapshot.objects.get().features if f["psi"] is not None)


def test_too_few_samples_never_alert(add_cases, settings):
    settings.TELEDER_DRIFT_MIN_SAMPLES = 50
    add_cases(3, days_ago=14, probability=lambda i: 0.05)
    add_cases(3, days_ago=2, probability=lambda i: 0.95)
    assert check_drift.apply().get() == {"snapshots": 1, "alerts": 0}


def test_drift_page_is_for_admins_only(client, dermatologist):
    client.force_login(dermatologist)
    assert client.get(reverse("drift")).status_code == 403
