"""Django storage backend for nanocdn, with node failover.

    STORAGES = {"default": {"BACKEND": "nanocdn_django.NanoCdnStorage", "OPTIONS": {...}}}

See README.md beside this package.
"""

from .client import NanoCdnClient, Stored
from .errors import (
    Attempt,
    NanoCdnError,
    NanoCdnFileExists,
    NanoCdnFileNotFound,
    NanoCdnHttpError,
    NanoCdnReadError,
    NanoCdnTooLarge,
    NanoCdnUnauthorized,
    NanoCdnUnavailable,
    NanoCdnUploadUncertain,
)
from .storage import NanoCdnFile, NanoCdnStorage

__version__ = "0.1.0"

__all__ = [
    "Attempt",
    "NanoCdnClient",
    "NanoCdnError",
    "NanoCdnFile",
    "NanoCdnFileExists",
    "NanoCdnFileNotFound",
    "NanoCdnHttpError",
    "NanoCdnReadError",
    "NanoCdnStorage",
    "NanoCdnTooLarge",
    "NanoCdnUnauthorized",
    "NanoCdnUnavailable",
    "NanoCdnUploadUncertain",
    "Stored",
]
