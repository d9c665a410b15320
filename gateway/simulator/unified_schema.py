"""The GraphQL schema the simulated WinCC Unified runtime serves, and its quality enums.

The schema is written here from the names and types a Unified runtime offers (queries,
mutations, subscriptions), so graphql-core validates every document against it as a real
runtime does: an unknown field or a wrong argument type is an ``errors`` answer.

Quality travels as enums rather than the classic byte ``QQSSSSLL``; ``quality_fields``
splits the byte into them (main quality from bits 7-6, sub-status from bits 5-2 by main
quality, limit from bits 1-0), so a client can put the byte back together.
"""

from __future__ import annotations

from functools import cache

from graphql import GraphQLSchema, build_schema

from gateway.wincc.unified_parse import LIMITS, MAIN_QUALITIES, SUB_STATUSES

_SUB_STATUS_NAMES = " ".join(
    dict.fromkeys(name for names in SUB_STATUSES.values() for name in names if name)
)

_ALARM_FIELDS = """\
  name: String
  instanceID: Int
  alarmClassName: String
  state: AlarmStateEnum
  priority: Int
  eventText: [String]
  raiseTime: Timestamp
  acknowledgmentTime: Timestamp
  clearTime: Timestamp
  modificationTime: Timestamp
  value: Variant
"""
"""The fields of an active alarm, in the query's type and in its notification."""

SDL = f"""
scalar Variant
scalar Timestamp

enum MainQuality {{ {" ".join(MAIN_QUALITIES)} }}
enum QualitySubStatus {{ {_SUB_STATUS_NAMES} }}
enum QualityLimit {{ {" ".join(LIMITS)} }}
enum ObjectTypesEnum {{
  TAG SIMPLETAG STRUCTURETAG TAGTYPE STRUCTURETAGTYPE SIMPLETAGTYPE ALARM ALARMCLASS
  LOGGINGTAG
}}
enum LoggedTagValuesSortingModeEnum {{ TIME_ASC TIME_DESC }}
enum LoggedTagValuesBoundingModeEnum {{
  NO_BOUNDING_VALUES LEFT_BOUNDING_VALUES RIGHT_BOUNDING_VALUES LEFTRIGHT_BOUNDING_VALUES
}}
enum LoggedTagValueFlagsEnum {{
  EXTRA CALCULATED PARTIAL BOUNDING NO_DATA FIRST_STORED LAST_STORED
}}
enum AlarmStateEnum {{
  NORMAL RAISED RAISED_CLEARED RAISED_ACKNOWLEDGED RAISED_ACKNOWLEDGED_CLEARED
  RAISED_CLEARED_ACKNOWLEDGED REMOVED
}}

type ErrorInfo {{ code: String description: String }}

type User {{
  id: String name: String fullName: String language: String autoLogoffSec: Int
}}

type Session {{ user: User token: String expires: Timestamp error: ErrorInfo }}

type Quality {{
  quality: MainQuality!
  subStatus: QualitySubStatus
  limit: QualityLimit
  extendedSubStatus: [String]
  sourceQuality: Boolean
  sourceTime: Boolean
  timeCorrected: Boolean
}}

type Value {{ value: Variant timestamp: Timestamp quality: Quality }}

type TagValueResult {{ name: String! value: Value error: ErrorInfo }}

type WriteTagValuesResult {{ name: String error: ErrorInfo }}

type BrowseTagsResult {{
  name: String displayName: String objectType: ObjectTypesEnum dataType: String
}}

type LoggedValue {{ value: Value flags: [LoggedTagValueFlagsEnum] }}

type LoggedTagValuesResult {{
  loggingTagName: String error: ErrorInfo values: [LoggedValue]
}}

type ActiveAlarm {{
{_ALARM_FIELDS}}}

type ActiveAlarmNotification {{
{_ALARM_FIELDS}  notificationReason: String
}}

type ActiveAlarmMutationResult {{ alarmName: String alarmInstanceID: Int error: ErrorInfo }}

type TagValueNotification {{
  name: String value: Value error: ErrorInfo notificationReason: String
}}

input QualityInput {{
  quality: MainQuality!
  subStatus: QualitySubStatus
  limit: QualityLimit = OK
  extendedSubStatus: [String]
  sourceQuality: Boolean = false
  sourceTime: Boolean = false
  timeCorrected: Boolean = false
}}

input TagValueInput {{
  name: String! value: Variant! timestamp: Timestamp quality: QualityInput
}}

input AlarmIdentifierInput {{ name: String! instanceID: Int = 0 }}

type Query {{
  tagValues(names: [String!]!, directRead: Boolean = false): [TagValueResult]
  browse(
    nameFilters: [String] = []
    objectTypeFilters: [ObjectTypesEnum] = []
    baseTypeFilters: [String] = []
    language: String = "en-US"
  ): [BrowseTagsResult]
  loggedTagValues(
    names: [String]!
    startTime: Timestamp
    endTime: Timestamp
    maxNumberOfValues: Int = 0
    sortingMode: LoggedTagValuesSortingModeEnum = TIME_ASC
    boundingValuesMode: LoggedTagValuesBoundingModeEnum = NO_BOUNDING_VALUES
  ): [LoggedTagValuesResult]
  activeAlarms(
    systemNames: [String] = []
    filterString: String = ""
    filterLanguage: String = "en-US"
    languages: [String] = ["en-US"]
  ): [ActiveAlarm]
}}

type Mutation {{
  login(username: String!, password: String!): Session
  extendSession: Session
  logout(allSessions: Boolean = false): Boolean
  writeTagValues(
    input: [TagValueInput]!, timestamp: Timestamp, quality: QualityInput
  ): [WriteTagValuesResult]
  acknowledgeAlarms(input: [AlarmIdentifierInput]!): [ActiveAlarmMutationResult]
}}

type ReduStateValue {{ value: String timestamp: Timestamp }}

type ReduStateNotification {{ value: ReduStateValue notificationReason: String }}

type Subscription {{
  reduState: ReduStateNotification
  tagValues(names: [String!]!): TagValueNotification
  activeAlarms(
    systemNames: [String] = []
    filterString: String = ""
    filterLanguage: String = "en-US"
    languages: [String] = ["en-US"]
  ): ActiveAlarmNotification
}}
"""


def make_schema() -> GraphQLSchema:
    """A fresh schema; the API binds its resolvers to the fields of its own copy."""
    return build_schema(SDL)


@cache
def quality_fields(code: int) -> dict[str, object]:
    """The ``Quality`` object of a classic quality byte (cached: 256 codes at most)."""
    main = MAIN_QUALITIES[(code >> 6) & 0b11]
    names = SUB_STATUSES[main]
    sub = (code >> 2) & 0b1111
    return {
        "quality": main,
        "subStatus": names[sub] if sub < len(names) else None,
        "limit": LIMITS[code & 0b11],
        "extendedSubStatus": [],
        "sourceQuality": False,
        "sourceTime": False,
        "timeCorrected": False,
    }
