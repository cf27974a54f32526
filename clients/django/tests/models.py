from django.db import models


class Document(models.Model):
    title = models.CharField(max_length=100)
    # Default storage: nanocdn (tests/settings.py). The stored name is "<node>/pub/docs/<file>".
    file = models.FileField(upload_to="docs/")

    class Meta:
        app_label = "tests"


class Receipt(models.Model):
    """A short max_length: the stored name (node and namespace prefix included) must fit."""

    file = models.FileField(upload_to="r/", max_length=40)

    class Meta:
        app_label = "tests"
