"""Django settings for the test suite: an in-memory sqlite database and nanocdn as the default storage.

The nodes come from the environment that test/clients/django.test.ts sets
(see tests/live.py).
"""

import os
import tempfile

import django

from tests import live

SECRET_KEY = "not a secret: tests only"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["django.contrib.staticfiles", "tests"]
STATIC_URL = "/static/"
# Never written: the storage refuses to be the staticfiles storage before anything is collected.
STATIC_ROOT = os.path.join(tempfile.gettempdir(), "nanocdn-django-static-root")
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

# The two nodes of the cluster. (Node 3, on its own, is only for the tests that break its store;
# tests/cluster_kill.py, run apart, SIGKILLs node 1.)
NANOCDN = {
    "NODES": [live.node("1").url, live.node("2").url],
    "USERNAME": live.USER,
    "PASSWORD": live.PASSWORD,
    "TIMEOUT": 30,
    "CONNECT_TIMEOUT": 2,
}

if django.VERSION >= (4, 2):
    STORAGES = {
        "default": {"BACKEND": "nanocdn_django.NanoCdnStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
else:
    DEFAULT_FILE_STORAGE = "nanocdn_django.NanoCdnStorage"
