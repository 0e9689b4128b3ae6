"""The HTTP shell: the gevent WSGI server and its connections, and what wraps every request (API keys,
security headers, request ids and logs, errors as JSON, the OpenAPI document)."""
