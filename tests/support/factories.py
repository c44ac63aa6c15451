"""factory-boy factories. Cases with images are made through the service (``make_case`` in conftest); AI
results through ``tests.support.analysis``."""

import factory

from cases.models import Lesion, Organization, Patient, User
from cases.vocabulary import Role, Sex, Site
from inference.models import ModelStatus, ModelVersion

PASSWORD = "correct-horse-battery"


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"Clinic {n}")
    slug = factory.Sequence(lambda n: f"clinic-{n}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    first_name = "Alex"
    last_name = factory.Sequence(lambda n: f"Tester{n}")
    role = Role.CLINICIAN
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def organizations(self, create, extracted, **kwargs):
        if create and extracted:
            self.organizations.set(extracted)
        if create:
            self.save()


class PatientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Patient

    organization = factory.SubFactory(OrganizationFactory)
    reference = factory.Sequence(lambda n: f"P-{n:05d}")
    sex = Sex.FEMALE
    year_of_birth = 1970
    created_by = factory.SubFactory(UserFactory)


class LesionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Lesion

    patient = factory.SubFactory(PatientFactory)
    site = Site.TORSO
    label = "left shoulder"


class ModelVersionFactory(factory.django.DjangoModelFactory):
    """A registered model version row without a package on disk: for tests of what is recorded and shown,
    not of what runs (those register a real package from ``tests.support.onnx_models``)."""

    class Meta:
        model = ModelVersion
        django_get_or_create = ("name", "version")

    name = "test-ensemble"
    version = factory.Sequence(lambda n: f"1.0.{n}")
    task = "binary"
    status = ModelStatus.ACTIVE
    sha256 = "0" * 64
    package_path = "/nonexistent"
    threshold = 0.3
    manifest = factory.LazyAttribute(
        lambda v: {
            "class_names": ["benign", "malignant"],
            "members": [{"name": "member0"}, {"name": "member1"}],
            "risk_bands": {"medium": 0.3, "high": 0.7},
        }
    )
