// Decodes Sparkplug B payloads with Eclipse Tahu's sparkplug-payload, a decoder the
// gateway did not write. Input on stdin, one JSON object a line:
//   {"payload": "<base64>", "datatypes": {"<alias>": <datatype>, ...}}
// "datatypes" (optional) are those the births declared: data carries aliases only, and a
// host resolves each metric's datatype from the birth, as done here before decoding.
// Output on stdout, one JSON object a line: Tahu's decoded payload, 64-bit numbers as
// decimal strings.
"use strict";

const readline = require("readline");
const { decodePayload } = require("sparkplug-payload").get("spBv1.0");
const { org } = require("sparkplug-payload/lib/sparkplugPayloadProto");

const Payload = org.eclipse.tahu.protobuf.Payload;

function withBirthDatatypes(bytes, datatypes) {
  if (!datatypes) return bytes;
  const message = Payload.decode(bytes);
  for (const metric of message.metrics) {
    const alias = metric.alias === null || metric.alias === undefined ? null : String(metric.alias);
    if (!metric.datatype && alias !== null && datatypes[alias] !== undefined) {
      metric.datatype = datatypes[alias];
    }
  }
  return Payload.encode(message).finish();
}

function plain(key, value) {
  if (value && value.__isLong__ === true) return value.toString();
  if (typeof value === "bigint") return value.toString();
  return value;
}

const lines = readline.createInterface({ input: process.stdin, terminal: false });
lines.on("line", (line) => {
  if (!line.trim()) return;
  const request = JSON.parse(line);
  const bytes = Buffer.from(request.payload, "base64");
  const decoded = decodePayload(withBirthDatatypes(bytes, request.datatypes));
  process.stdout.write(JSON.stringify(decoded, plain) + "\n");
});
