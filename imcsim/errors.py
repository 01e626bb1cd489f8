"""Errors raised for bad user input. All derive from ValueError so callers can catch either."""


class ConfigError(ValueError):
    """A configuration (hardware, technology, experiment) is missing, malformed or out of range."""


class DataError(ValueError):
    """A dataset directory or file is missing, unreadable or not what it claims to be."""


class CalibrationError(ValueError):
    """A layer needs calibration data (ADC range, input range) that it has not seen."""
