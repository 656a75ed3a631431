"""OpenAPI: the project's JWT authentication classes are simplejwt's bearer scheme."""

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme


class AccountJWTScheme(SimpleJWTScheme):
    target_class = "accounts.authentication.JWTAuthentication"


class AccountStatelessJWTScheme(SimpleJWTScheme):
    """The same tokens and scheme ("jwtAuth", defined by AccountJWTScheme): apps see one."""

    target_class = "accounts.authentication.StatelessJWTAuthentication"
    name: list = []  # nothing to define again

    def get_security_requirement(self, auto_schema):
        return {AccountJWTScheme.name: []}

    def get_security_definition(self, auto_schema):
        return []
