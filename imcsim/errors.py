"""Errors raised for bad user input. All derive from ValueError so callers can catch either."""


class ConfigError(ValueError):
    """A configuration (hardware, technology, experiment) is missing, malformed or out of range."""


class DataError(ValueError):
    """A dataset directory or file is missing, unreadable or not what it claims to be."""


class CalibrationError(ValueError):
    """A layer needs calibration data (ADC range, input range) that it has not seen."""


class CalibrationWarning(UserWarning):
    """Calibration could not learn a range from the data and fell back to a stated default."""


class StorageError(OSError):
    """A file could not be written: the disk (or quota, or file-size limit) is full. The
    message names the file, the bytes it needed and the bytes free."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()
