import cases.models
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("cases", "0006_review_without_ai_assessment"),
    ]

    operations = [
        migrations.AddField(
            model_name="prediction",
            name="heatmap",
            field=models.FileField(
                blank=True,
                help_text="Where the model looked: a PNG overlay of the malignancy Grad-CAM (empty when the model "
                "version makes none or the image was not assessed).",
                max_length=255,
                upload_to=cases.models.heatmap_path,
            ),
        ),
    ]
