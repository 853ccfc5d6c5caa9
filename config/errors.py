"""The one error class of a config that does not follow the schema or does not fit its builders."""
from __future__ import annotations


class ConfigError(ValueError):
    """A config file does not follow the schema, or a value does not fit the builder it feeds.

    The message always starts with the config file and the dotted key (``model.head.kwargs.width``),
    then says what was expected and what was found. Code that only sees a section (the model
    builders) raises it with ``config_file=""``; the caller that knows the file adds it with
    ``in_file``.

    Attributes:
        config_file: the YAML file ("" while unknown).
        key: dotted YAML path of the culprit ("" for the whole file).
        problem: what was expected and what was found.
    """

    def __init__(self, config_file: str, key: str, problem: str) -> None:
        self.config_file = str(config_file)
        self.key = key
        self.problem = problem
        super().__init__(": ".join(part for part in (self.config_file, key, problem) if part))

    def in_file(self, config_file: str) -> ConfigError:
        """This error with ``config_file`` named (itself when it already names one)."""
        if self.config_file:
            return self
        return ConfigError(config_file, self.key, self.problem)
