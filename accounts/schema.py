"""OpenAPI: the project's JWT authentication classes are simplejwt's bearer scheme."""

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme


class AccountJWTScheme(SimpleJWTScheme):
    target_class = "accounts.authentication.JWTAuthentication"
