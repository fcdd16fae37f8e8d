"""The project's exception types. Every user-facing failure is a KwsError whose message names
the file (or device) and the fix; the CLI prints it without a traceback."""


class KwsError(Exception):
    """Base class for errors a user can act on."""


class AudioError(KwsError):
    """Unreadable, empty, too long or otherwise unusable audio."""


class BundleError(KwsError):
    """A model bundle that is corrupt, truncated, of another version, or inconsistent."""


class DataError(KwsError):
    """A dataset folder or manifest that is missing or inconsistent."""


class DeviceError(KwsError):
    """No audio input device, or the device failed."""


class ExportError(KwsError):
    """An export step failed (missing toolchain, unsupported model)."""
