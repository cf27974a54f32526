"""The Django storage backend: :class:`NanoCdnStorage`."""

import datetime
import io
import posixpath
import ssl
import threading
import time
from email.utils import parsedate_to_datetime
from pathlib import PurePosixPath

import django
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, SuspiciousFileOperation
from django.core.files.base import File
from django.core.files.storage import Storage
from django.core.signals import setting_changed
from django.utils.deconstruct import deconstructible
from django.utils.functional import cached_property
from django.utils.module_loading import import_string

from .client import NAMESPACES, NanoCdnClient, expiry_headers, name_to_target, parse_name
from .errors import NanoCdnFileExists, NanoCdnFileNotFound
from .signing import sign_path, signing_key

#: what the option means, and its default (None: required or derived)
OPTIONS = {
    "nodes": None,  # base URLs of the nodes, in the order to try them (or a dict {node id: URL})
    "username": None,  # a user of the nodes' htpasswd file (needed to write, and to read priv files)
    "password": None,
    "namespace": "pub",  # "pub" (anyone may read) or "priv" (reading needs the credentials)
    "base_url": None,  # where url() points; default: the first node
    "timeout": 30.0,  # seconds to wait for an answer, or for the next bytes of one
    "connect_timeout": 3.0,  # seconds to wait for a connection
    "cooldown": 30.0,  # seconds a node that failed is asked after the others
    "expect_continue": True,  # send Expect: 100-continue, so refusals come before the body
    "continue_timeout": 3.0,  # seconds a node has to ask for the body before the upload moves on, unsent
    "delete_after": None,  # seconds after which the nodes delete what save() stores (None: never)
    "url_signing_secret_file": None,  # the nodes' url_signing_secret_file: url() of a priv file is then signed
    "signed_url_ttl": 3600,  # seconds a signed url() works for
    "node_id_length": 3,  # characters kept free for the node id when a FileField has a max_length
    "ca_file": None,  # PEM bundle to verify HTTPS nodes with, instead of the system's
    "socket_options": (),  # (level, option, value) tuples set on every socket (constructor only)
}
#: how many suffixed names to try when the name is taken (409), as Django's own storage would
MAX_NAME_ATTEMPTS = 100
#: what get_alternative_name adds: "_" and 7 random characters
SUFFIX_LENGTH = 8
#: limits the nodes check (bytes): a path segment, and the whole name
MAX_SEGMENT_BYTES = 255
MAX_NAME_BYTES = 1024


@deconstructible(path="nanocdn_django.NanoCdnStorage")
class NanoCdnStorage(Storage):
    """Stores files on nanocdn nodes.

    Every option can be given to the constructor (``STORAGES[...]["OPTIONS"]``
    on Django 4.2+) or in the ``NANOCDN`` setting dict with upper-case keys;
    constructor options win. See :data:`OPTIONS`.

    Names: ``save("docs/a.pdf", ...)`` uploads to ``/upload/<namespace>/docs/a.pdf``
    and returns the name the node gives it, ``<node>/<namespace>/docs/a.pdf``
    (no leading slash). Every other method takes that returned name. A taken
    name (409 on that node) is retried with a suffix, like Django's storage.
    """

    def __init__(
        self,
        nodes=None,
        username=None,
        password=None,
        namespace=None,
        base_url=None,
        timeout=None,
        connect_timeout=None,
        cooldown=None,
        expect_continue=None,
        node_id_length=None,
        ca_file=None,
        socket_options=None,
        continue_timeout=None,
        delete_after=None,
        url_signing_secret_file=None,
        signed_url_ttl=None,
    ):
        given = dict(
            nodes=nodes,
            username=username,
            password=password,
            namespace=namespace,
            base_url=base_url,
            timeout=timeout,
            connect_timeout=connect_timeout,
            cooldown=cooldown,
            expect_continue=expect_continue,
            node_id_length=node_id_length,
            ca_file=ca_file,
            socket_options=socket_options,
            continue_timeout=continue_timeout,
            delete_after=delete_after,
            url_signing_secret_file=url_signing_secret_file,
            signed_url_ttl=signed_url_ttl,
        )
        self._given = {k: v for k, v in given.items() if v is not None}
        self._expiry = threading.local()
        refuse_static_files()
        setting_changed.connect(self._setting_changed)

    def _setting_changed(self, setting, **kwargs):
        if setting == "NANOCDN":
            self.__dict__.pop("config", None)
            client = self.__dict__.pop("client", None)
            if client is not None:
                client.close()

    # -- configuration ----------------------------------------------------

    @cached_property
    def config(self):
        """The options in force: defaults, then ``settings.NANOCDN``, then the constructor's."""
        from_settings = getattr(settings, "NANOCDN", None) or {}
        if not isinstance(from_settings, dict):
            raise ImproperlyConfigured("settings.NANOCDN must be a dict")
        config = dict(OPTIONS)
        for key, value in from_settings.items():
            option = str(key).lower()
            if option not in OPTIONS:
                raise ImproperlyConfigured(
                    "settings.NANOCDN has an unknown key %r; known keys: %s"
                    % (key, ", ".join(k.upper() for k in OPTIONS))
                )
            config[option] = value
        config.update(self._given)
        nodes = config["nodes"]
        if isinstance(nodes, str):
            nodes = [n.strip() for n in nodes.split(",") if n.strip()]
        if not nodes:
            raise ImproperlyConfigured(
                "nanocdn needs node URLs: set NANOCDN = {'NODES': [...]} or the 'nodes' option"
            )
        if isinstance(nodes, dict):
            config["nodes"] = {str(k): str(v).rstrip("/") for k, v in nodes.items()}
        else:
            config["nodes"] = [str(n).rstrip("/") for n in nodes]
        if config["namespace"] not in NAMESPACES:
            raise ImproperlyConfigured(
                "nanocdn namespace must be one of %s, not %r" % (", ".join(NAMESPACES), config["namespace"])
            )
        for key in ("timeout", "connect_timeout", "cooldown", "continue_timeout", "signed_url_ttl"):
            if not isinstance(config[key], (int, float)) or config[key] < 0:
                raise ImproperlyConfigured("nanocdn option %r must be a number of seconds, not %r" % (key, config[key]))
        # A link that expires as it is made is refused at once.
        if config["signed_url_ttl"] < 1:
            raise ImproperlyConfigured("nanocdn option 'signed_url_ttl' must be 1 second or more, not %r" % (config["signed_url_ttl"],))
        try:
            expiry_headers(config["delete_after"])
        except ValueError as e:
            raise ImproperlyConfigured("nanocdn option 'delete_after': %s" % e) from e
        if config["base_url"] is None:
            config["base_url"] = list(config["nodes"].values() if isinstance(nodes, dict) else config["nodes"])[0]
        config["base_url"] = str(config["base_url"]).rstrip("/")
        return config

    @cached_property
    def client(self):
        """The :class:`~nanocdn_django.client.NanoCdnClient` this storage talks through."""
        config = self.config
        context = ssl.create_default_context(cafile=config["ca_file"]) if config["ca_file"] else None
        try:
            return NanoCdnClient(
                config["nodes"],
                username=config["username"],
                password=config["password"],
                timeout=config["timeout"],
                connect_timeout=config["connect_timeout"],
                cooldown=config["cooldown"],
                expect_continue=config["expect_continue"],
                ssl_context=context,
                socket_options=config["socket_options"],
                continue_timeout=config["continue_timeout"],
            )
        except ValueError as e:
            raise ImproperlyConfigured("nanocdn: %s" % e) from e

    @property
    def namespace(self):
        return self.config["namespace"]

    # -- names ------------------------------------------------------------

    def generate_filename(self, filename):
        """Django 4.2+'s rules on every version: '/' separators, no '..', a valid file name."""
        filename = str(filename).replace("\\", "/")
        dirname, filename = posixpath.split(filename)
        if ".." in PurePosixPath(dirname).parts:
            raise SuspiciousFileOperation("Detected path traversal attempt in '%s'" % dirname)
        return posixpath.normpath(posixpath.join(dirname, self.get_valid_name(filename)))

    def _check_path(self, name):
        """The path to upload under the namespace, checked as the nodes will check it."""
        name = str(name).replace("\\", "/")
        segments = name.split("/")
        if name.startswith("/") or any(s in ("", ".", "..") for s in segments):
            raise SuspiciousFileOperation(
                "%r cannot be stored: no leading '/', empty, '.' or '..' segments" % name
            )
        for segment in segments:
            if any(ord(c) < 32 or ord(c) == 127 for c in segment):
                raise SuspiciousFileOperation("%r cannot be stored: control characters" % name)
            if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
                raise SuspiciousFileOperation("%r cannot be stored: a segment over %d bytes" % (name, MAX_SEGMENT_BYTES))
        longest = len(self._prefix_room()) + len(name.encode("utf-8"))
        if longest > MAX_NAME_BYTES:
            raise SuspiciousFileOperation("%r cannot be stored: names are at most %d bytes" % (name, MAX_NAME_BYTES))
        return name

    def _prefix_room(self):
        # "<node>/<namespace>/", with the node id as long as node_id_length allows
        return "x" * int(self.config["node_id_length"]) + "/" + self.namespace + "/"

    def get_available_name(self, name, max_length=None):
        """The name to upload, without asking the nodes whether it exists.

        A node answers 409 when the name is taken there, and ``_save`` then
        retries with a suffix, so no exists() round trip per candidate. With a
        ``max_length`` (a FileField's), the name is shortened so that the stored
        name fits: the node prefix (``node_id_length`` characters for the node
        id) plus room for a suffix are kept free.
        """
        name = self._check_path(name)
        if max_length is None:
            return name
        room = max_length - len(self._prefix_room()) - SUFFIX_LENGTH
        if len(name) <= room:
            return name
        dir_name, file_name = posixpath.split(name)
        file_root, file_ext = posixpath.splitext(file_name)
        truncation = len(name) - room
        file_root = file_root[:-truncation] if truncation < len(file_root) else ""
        if not file_root:
            raise SuspiciousFileOperation(
                'Storage can not find an available filename for "%s". Please make sure that the corresponding '
                "file field allows sufficient \"max_length\" (the stored name adds %d characters for the node "
                "and namespace, and %d for a suffix)." % (name, len(self._prefix_room()), SUFFIX_LENGTH)
            )
        return posixpath.join(dir_name, file_root + file_ext)

    # -- Storage API ------------------------------------------------------

    def save(self, name, content, max_length=None, *, delete_after=None, delete_at=None):
        """Django's save(); ``delete_after`` (seconds or a timedelta) or ``delete_at`` (an aware datetime or unix
        seconds) make the nodes delete this file then, instead of after the ``delete_after`` option (if set)."""
        expiry = {"delete_after": delete_after, "delete_at": delete_at}
        if delete_after is None and delete_at is None:
            expiry["delete_after"] = self.config["delete_after"]
        expiry_headers(**expiry)  # a bad value fails here, before anything is sent
        self._expiry.value = expiry
        try:
            return super().save(name, content, max_length=max_length)
        finally:
            del self._expiry.value

    def _save(self, name, content):
        name = self._check_path(name)
        dir_name, file_name = posixpath.split(name)
        file_root, file_ext = posixpath.splitext(file_name)
        expiry = getattr(self._expiry, "value", None) or {"delete_after": self.config["delete_after"]}
        candidate = name
        for _ in range(MAX_NAME_ATTEMPTS):
            try:
                return self.client.upload(self.namespace, candidate, content, **expiry).name
            except NanoCdnFileExists as taken:
                last_taken = taken
                candidate = posixpath.join(dir_name, self.get_alternative_name(file_root, file_ext))
        raise last_taken

    def _open(self, name, mode="rb"):
        if any(c in mode for c in "wax+"):
            raise ValueError("nanocdn files are immutable: open them for reading only, not %r" % mode)
        client = self._client_for(name)
        return NanoCdnFile(client.open(name), name, mode, reopen=lambda: client.open(name))

    def _client_for(self, name):
        if parse_name(name) is None:
            raise NanoCdnFileNotFound(
                "%r is not a stored name (<node>/<pub|priv>/<path>, as save() returns it)" % (name,)
            )
        return self.client

    def exists(self, name):
        """Whether a stored file has this name; False without asking for a name save() cannot have returned."""
        if parse_name(name) is None:
            return False
        return self.client.head(name) is not None

    def _head(self, name):
        headers = self._client_for(name).head(name)
        if headers is None:
            raise NanoCdnFileNotFound("no file %r on nanocdn" % (name,))
        return headers

    def size(self, name):
        return int(self._head(name)["content-length"])

    def delete(self, name):
        """Deletes the file; a missing file is no error (as with Django's FileSystemStorage)."""
        if not name:
            raise ValueError("The name must be given to delete().")
        if parse_name(name) is None:
            return
        self.client.delete(name)

    def url(self, name):
        """The file's link; for a private file, signed for ``signed_url_ttl`` seconds when the storage has the signing key."""
        target = name_to_target(str(name))
        parsed = parse_name(str(name))
        secret_file = self.config["url_signing_secret_file"]
        if parsed is None or parsed[1] != "priv" or secret_file is None:
            return self.config["base_url"] + target
        # Read at each call, so that a rotated key is used at once.
        try:
            with open(secret_file, encoding="utf-8") as f:
                key = signing_key(f.read())
        except (OSError, ValueError) as e:
            raise ImproperlyConfigured("nanocdn option 'url_signing_secret_file': %s" % e) from e
        expires = int(time.time()) + int(self.config["signed_url_ttl"])
        return self.config["base_url"] + sign_path(target, key, expires)

    def get_modified_time(self, name):
        """The file's Last-Modified (aware in UTC if USE_TZ, else naive local time, as Django's own storage)."""
        moment = parsedate_to_datetime(self._head(name)["last-modified"])
        if settings.USE_TZ:
            return moment.astimezone(datetime.timezone.utc)
        return moment.astimezone().replace(tzinfo=None)

    def get_created_time(self, name):
        """Files never change, so this is the modified time."""
        return self.get_modified_time(name)


def refuse_static_files():
    """Raises ImproperlyConfigured when the settings make a NanoCdnStorage the staticfiles storage."""
    if not settings.configured:
        return
    if django.VERSION >= (4, 2):
        backend = (getattr(settings, "STORAGES", None) or {}).get("staticfiles", {}).get("BACKEND")
        setting = "STORAGES['staticfiles']"
    else:
        backend = getattr(settings, "STATICFILES_STORAGE", None)
        setting = "STATICFILES_STORAGE"
    try:
        is_nanocdn = backend is not None and issubclass(import_string(backend), NanoCdnStorage)
    except (ImportError, TypeError):
        return  # not ours to judge: Django reports a backend it cannot import
    if is_nanocdn:
        raise ImproperlyConfigured(
            "%s is %s, but nanocdn cannot hold static files: a node adds its id and the namespace to every name it "
            "stores (static/app.css is stored as 1/pub/static/app.css), so {%% static %%} would link names that do "
            "not exist and collectstatic would upload everything again on every run. Keep static files on Django's "
            "StaticFilesStorage or ManifestStaticFilesStorage, served by your web server or CDN, and nanocdn for "
            "uploaded files (the default storage, or a FileField's storage)." % (setting, backend)
        )


class NanoCdnFile(File):
    """A stored file opened for reading: the body streams from the node as it is read.

    ``size`` is known at once (from Content-Length); ``seek()`` works (by Range
    requests); ``node`` tells which node answered. Text modes decode UTF-8.
    Once closed, ``open()`` fetches it again (as ``FieldFile.open()`` does).
    """

    def __init__(self, raw, name, mode="rb", reopen=None):
        super().__init__(self._stream(raw, mode), name)
        self.mode = mode
        self.raw = raw
        self.size = raw.size
        self._reopen = reopen

    @staticmethod
    def _stream(raw, mode):
        stream = io.BufferedReader(raw, buffer_size=64 * 1024)
        if "b" not in mode:
            stream = io.TextIOWrapper(stream, encoding="utf-8")
        return stream

    @property
    def node(self):
        return self.raw.node

    def open(self, mode=None):
        if not self.closed:
            self.seek(0)
            return self
        if self._reopen is None:
            raise ValueError("The file cannot be reopened.")
        mode = mode or self.mode
        if any(c in mode for c in "wax+"):
            raise ValueError("nanocdn files are immutable: open them for reading only, not %r" % mode)
        self.raw = self._reopen()
        self.file = self._stream(self.raw, mode)
        self.mode = mode
        return self
