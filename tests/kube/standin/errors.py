"""The API server's errors, rendered as `Status` objects the way a real one renders them."""


class ApiError(Exception):
    """A failed request: HTTP `code`, `reason` (NotFound, AlreadyExists, Conflict, Invalid…)."""

    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self):
        body = {
            'kind': 'Status',
            'apiVersion': 'v1',
            'metadata': {},
            'status': 'Failure',
            'message': self.message,
            'reason': self.reason,
            'code': self.code,
        }
        if self.details is not None:
            body['details'] = self.details
        return body

    @staticmethod
    def _details(res, name):
        details = {'name': name, 'kind': res.plural}
        if res.group:
            details['group'] = res.group
        return details

    @classmethod
    def not_found(cls, res, name):
        return cls(404, 'NotFound', f'{res.qualified} "{name}" not found', cls._details(res, name))

    @classmethod
    def already_exists(cls, res, name):
        return cls(409, 'AlreadyExists', f'{res.qualified} "{name}" already exists',
                   cls._details(res, name))

    @classmethod
    def conflict(cls, res, name):
        return cls(409, 'Conflict',
                   f'Operation cannot be fulfilled on {res.qualified} "{name}": the object has been '
                   'modified; please apply your changes to the latest version and try again',
                   cls._details(res, name))

    @classmethod
    def invalid(cls, res, name, causes):
        """`causes`: (field, message) pairs; the message names them all, as the server does."""
        text = ', '.join(f'{field}: {message}' if field else message for field, message in causes)
        details = cls._details(res, name)
        details['kind'] = res.kind
        details['causes'] = [
            {'reason': 'FieldValueInvalid', 'message': message, 'field': field}
            for field, message in causes
        ]
        if len(causes) > 1:
            text = f'[{text}]'
        return cls(422, 'Invalid', f'{res.kind} "{name}" is invalid: {text}', details)

    @classmethod
    def forbidden(cls, res, name, why):
        return cls(403, 'Forbidden', f'{res.qualified} "{name}" is forbidden: {why}',
                   cls._details(res, name))

    @classmethod
    def bad_request(cls, message):
        return cls(400, 'BadRequest', message)

    @classmethod
    def method_not_allowed(cls):
        return cls(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')

    @classmethod
    def unsupported_media_type(cls, content_type):
        return cls(415, 'UnsupportedMediaType', f'the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {content_type!r})')

    @classmethod
    def gone(cls, message):
        return cls(410, 'Expired', message)
