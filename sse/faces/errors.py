"""Errors raised by the face pipeline; the CLI prints them without a traceback."""


class FacesError(Exception):
    """Base class of the face pipeline's errors."""


class InputNotFoundError(FacesError):
    """An input path given on the command line does not exist or holds no media."""


class ModelNotFoundError(FacesError):
    """A model file (dlib landmark predictor, detector) cannot be found."""


class UnreadableMediaError(FacesError):
    """A video or image cannot be decoded, or its stream ends early (truncated)."""


class LabelError(FacesError):
    """A label CSV line or a class name cannot be understood."""
