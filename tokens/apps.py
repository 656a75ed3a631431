from django.apps import AppConfig


class TokensConfig(AppConfig):
    name = "tokens"
    verbose_name = "STS credentials"

    def ready(self) -> None:
        from tokens import (
            checks,  # noqa: F401 -- registers the system checks
            receivers,  # noqa: F401 -- connects to accounts' signals
        )
