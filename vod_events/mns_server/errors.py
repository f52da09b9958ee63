"""The service's error codes, each with the HTTP status and message text MNS answers with.

Every failure the local server reports is an `MNSError`; the HTTP front turns it into the
`<Error><Code/><Message/><RequestId/><HostId/></Error>` body the SDK decodes. Keeping code,
status and wording in one table means no handler can pair a code with the wrong status.
"""

from __future__ import annotations

# code -> (HTTP status, the service's message when there is nothing more specific to say)
ERROR_CODES: dict[str, tuple[int, str]] = {
    "AccessDenied": (
        403,
        "The OwnerId that your Access Key Id associated to is forbidden for this operation.",
    ),
    "InvalidAccessKeyId": (403, "The AccessKey Id you provided is not exist."),
    "SignatureDoesNotMatch": (
        403,
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
    ),
    "InternalError": (500, "Internal error."),
    "InvalidAuthorizationHeader": (400, "The Authorization header format is invalid."),
    "InvalidDateHeader": (400, "The Date header format is invalid."),
    "InvalidDegist": (400, "The Content-MD5 you specified is invalid."),  # sic: the service's code
    "InvalidArgument": (400, "The argument you provided is invalid."),
    "InvalidRequestURL": (400, "Http request URL format invalid."),
    "InvalidQueryString": (400, "Http request URL contains invalid querystring item."),
    "MalformedXML": (400, "The XML you provided was not well-formed."),
    "MissingAuthorizationHeader": (400, "Authorization header is required."),
    "MissingDateHeader": (400, "Date header is required."),
    "MissingVersionHeader": (400, "x-mns-version header is required."),
    "InvalidVersionHeader": (400, "The x-mns-version header is invalid."),
    "MissingReceiptHandle": (400, "ReceiptHandle is required."),
    "MissingVisibilityTimeout": (400, "VisibilityTimeout is required."),
    "ReceiptHandleError": (400, "The receipt handle you provided is not valid."),
    "MessageNotExist": (404, "Message not exist."),
    "TimeExpired": (408, "The Http request you sent is expired."),
    "QueueNotExist": (404, "The queue name you provided is not exist."),
    "QueueAlreadyExist": (409, "The queue you want to create is already exist."),
    "InvalidQueueName": (
        400,
        "The queue name you provided is invalid. QueueName should start with a letter and "
        "contain only letters, digits and hyphens.",
    ),
    "QueueNameLengthError": (400, "The length of queue name should be between 1 and 256."),
    "TopicNotExist": (404, "The topic name you provided is not exist."),
    "TopicAlreadyExist": (409, "The topic you want to create is already exist."),
    "InvalidTopicName": (400, "The topic name you provided is invalid."),
    "SubscriptionNotExist": (404, "The subscription name you provided is not exist."),
    "SubscriptionAlreadyExist": (409, "The subscription you want to create is already exist."),
    "InvalidSubscriptionName": (400, "The subscription name you provided is invalid."),
}


class MNSError(Exception):
    """A failure answered with one of the service's error codes.

    `status` comes from `ERROR_CODES`, so a code always travels with the status the real
    service pairs it with. `message` defaults to the service's generic wording for the code.
    """

    def __init__(self, code: str, message: str | None = None) -> None:
        status, default_message = ERROR_CODES[code]
        self.code = code
        self.status = status
        self.message = message if message is not None else default_message
        super().__init__(f"{code}: {self.message}")


def out_of_range(element: str, low: int, high: int) -> MNSError:
    """The service's InvalidArgument for a numeric value outside its allowed range."""
    return MNSError("InvalidArgument", f"The value of {element} should between {low} and {high}.")
