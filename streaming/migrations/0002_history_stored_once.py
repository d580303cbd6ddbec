"""A turn's question and answer are stored once: `prompt` repeated the inputs and `outputs` the
completion. A turn whose completion was empty while its outputs were not gets them as its
completion first, so nothing that was answered is lost; going back fills both in again."""

from django.db import migrations


def completion_from_outputs(apps, schema_editor):
    History = apps.get_model("streaming", "History")
    for history in History.objects.filter(completion="").exclude(outputs=[]).iterator():
        history.completion = "\n".join(str(output) for output in history.outputs)
        history.save(update_fields=["completion"])


def prompt_and_outputs_again(apps, schema_editor):
    History = apps.get_model("streaming", "History")
    for history in History.objects.iterator():
        history.prompt = "\n".join(str(text) for text in history.inputs)
        history.outputs = [history.completion] if history.completion else []
        history.save(update_fields=["prompt", "outputs"])


class Migration(migrations.Migration):
    dependencies = [
        ("streaming", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(completion_from_outputs, prompt_and_outputs_again),
        migrations.RemoveField(model_name="history", name="outputs"),
        migrations.RemoveField(model_name="history", name="prompt"),
    ]
