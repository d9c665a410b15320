"""The GraphQL documents the ``unified`` dialect sends, one per operation.

Optional arguments are left out rather than sent as null, as the runtime expects; the
fields asked for are the ones ``gateway.wincc.unified_parse`` reads.
"""

from __future__ import annotations

_ERROR = "error { code description }"
_VALUE = (
    "value { value timestamp quality { quality subStatus limit extendedSubStatus "
    "sourceQuality sourceTime timeCorrected } }"
)
_ALARM = "name instanceID state priority eventText raiseTime acknowledgmentTime clearTime"

LOGIN = (
    "mutation Login($username: String!, $password: String!) {"
    " login(username: $username, password: $password) {"
    f" token expires user {{ name autoLogoffSec }} {_ERROR} }} }}"
)
EXTEND_SESSION = f"mutation Extend {{ extendSession {{ token expires {_ERROR} }} }}"
LOGOUT = "mutation Logout($allSessions: Boolean) { logout(allSessions: $allSessions) }"
TAG_VALUES = (
    "query TagValues($names: [String!]!) {"
    f" tagValues(names: $names) {{ name {_VALUE} {_ERROR} }} }}"
)
WRITE_TAG_VALUES = (
    "mutation Write($input: [TagValueInput]!) {"
    f" writeTagValues(input: $input) {{ name {_ERROR} }} }}"
)
BROWSE = "query Browse { browse { name displayName objectType dataType } }"
LOGGED_TAG_VALUES = (
    "query Logged($names: [String]!, $startTime: Timestamp, $endTime: Timestamp,"
    " $maxNumberOfValues: Int) {"
    " loggedTagValues(names: $names, startTime: $startTime, endTime: $endTime,"
    " maxNumberOfValues: $maxNumberOfValues, sortingMode: TIME_ASC) {"
    f" loggingTagName {_ERROR} values {{ {_VALUE} flags }} }} }}"
)
ACTIVE_ALARMS = f"query Alarms {{ activeAlarms {{ {_ALARM} }} }}"
ACKNOWLEDGE_ALARMS = (
    "mutation Ack($input: [AlarmIdentifierInput]!) {"
    f" acknowledgeAlarms(input: $input) {{ alarmName alarmInstanceID {_ERROR} }} }}"
)
SUBSCRIBE_TAG_VALUES = (
    "subscription Values($names: [String!]!) {"
    f" tagValues(names: $names) {{ name {_VALUE} {_ERROR} notificationReason }} }}"
)
SUBSCRIBE_ALARMS = f"subscription Alarms {{ activeAlarms {{ {_ALARM} notificationReason }} }}"
SUBSCRIBE_REDU_STATE = (
    "subscription Redu { reduState { value { value timestamp } notificationReason } }"
)
