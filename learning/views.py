"""The agreement dashboard page: how the AI agreed with dermatologists, per model version and organization."""

import datetime as dt

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from cases.permissions import organizations_for
from cases.views.common import role_required
from cases.vocabulary import Role
from learning.forms import AgreementFilterForm
from learning.selectors import agreement_table, default_filters


def day_start(day: dt.date | None, *, next_day: bool = False) -> dt.datetime | None:
    if day is None:
        return None
    if next_day:
        day = day + dt.timedelta(days=1)
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


@role_required(Role.DERMATOLOGIST, Role.ADMIN)
@require_GET
def agreement(request: HttpRequest) -> HttpResponse:
    form = AgreementFilterForm(request.GET or None, organizations=organizations_for(request.user))
    rows = []
    filters = None
    if not request.GET or form.is_valid():
        data = form.cleaned_data if request.GET else {}
        filters = default_filters(
            since=day_start(data.get("since")),
            until=day_start(data.get("until"), next_day=True),
            organization_id=data["organization"].pk if data.get("organization") else None,
            model_version_id=data["model_version"].pk if data.get("model_version") else None,
        )
        rows = agreement_table(user=request.user, filters=filters)
    return render(request, "learning/agreement.html", {"form": form, "rows": rows, "filters": filters})


@role_required(Role.ADMIN)
@require_GET
def drift(request: HttpRequest) -> HttpResponse:
    """The latest drift snapshots, alerts first (platform administrators)."""
    from learning.models import DriftSnapshot

    snapshots = DriftSnapshot.objects.select_related("model_version", "organization")[:100]
    return render(request, "learning/drift.html", {"snapshots": snapshots})
