"""The API's contract as developers read it: the OpenAPI document's error responses, examples and documentation
page, and the rule that an operation takes only the query parameters it documents.

- problems.py: the `application/problem+json` body (`ProblemDetails`) and `problems(...)`, the helper a route uses
  to document the statuses only it can answer (409, 402, 503, …);
- plugin.py: `ApiDocsPlugin`, which gives every operation its standard error responses (400, 401, 403, 404, 413,
  422, derived from the route: auth, guards, path parameters, body) and every Struct its `@example`;
- strict_query.py: the middleware that answers 400 for an undocumented query parameter;
- docs_page.py: the OpenAPI configuration and the Swagger UI page, served with vendored files (static/).

It sits with the shared modules: it imports no domain, and every domain's routes and schemas may import it.
"""

from voice_service.openapi.problems import FieldProblem, ProblemDetails, example, problems

__all__ = ["FieldProblem", "ProblemDetails", "example", "problems"]
