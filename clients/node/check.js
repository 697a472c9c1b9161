#!/usr/bin/env node
// Calling the restriction service from Node.js: one CheckRestriction, answer printed as JSON.
//
//   npm ci                       # @grpc/grpc-js and @grpc/proto-loader, pinned in package.json
//   node check.js --number 110105198001019918 --mode FLIGHT
//   node check.js --number 110105198001019918 --mode RAIL --train D301 --rail-class SECOND
//
// The protos are loaded at run time from ../../proto (the API, package sanction.v1) and
// ../../third_party/googleapis (google/rpc/status.proto); nothing is generated. The
// answer is the CheckResponse with the proto's field names, every field, enums by name,
// 64-bit numbers as numbers, dates YYYY-MM-DD (unset: null), as `sanction check --json`. The server is --target, by default SANCTION_LISTEN (as for
// `sanction check`), then 127.0.0.1:50051; SANCTION_TOKEN is sent as the bearer token.
//
// As for every caller: sell only on an ALLOW that came back. Exit codes: 0 answered (ALLOW
// or DENY; with --exit-code DENY exits 10), 64 a command line it does not accept, 65 the
// service refused the request as invalid (INVALID_ARGUMENT), 69 no answer (no server,
// UNAVAILABLE, deadline exceeded), 70 any other error status, 77 no or wrong token.
"use strict";

const path = require("node:path");
const { parseArgs } = require("node:util");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const ROOT = path.resolve(__dirname, "..", "..");
const EXIT = { ok: 0, deny: 10, usage: 64, invalid: 65, unavailable: 69, other: 70, permission: 77 };

function loadApi() {
  const definition = protoLoader.loadSync("sanction/v1/restriction.proto", {
    includeDirs: [path.join(ROOT, "proto"), path.join(ROOT, "third_party", "googleapis")],
    keepCase: true, // snake_case field names, as in the proto and in `sanction check --json`
    enums: String,
    longs: Number,
    defaults: true, // every field, zeros included
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).sanction.v1;
}

function usage(message) {
  process.stderr.write(`check.js: ${message} (see the comment at the top of check.js)\n`);
  process.exit(EXIT.usage);
}

function parseDate(text) {
  const found = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
  if (!found) usage(`--date: '${text}' is not a date; YYYY-MM-DD`);
  return { year: Number(found[1]), month: Number(found[2]), day: Number(found[3]) };
}

function enumValue(api, enumName, flag, text, prefix = "") {
  const values = Object.keys(api[enumName].type.value.reduce((all, v) => ({ ...all, [v.name]: 1 }), {}))
    .filter((name) => !name.endsWith("_UNSPECIFIED"));
  const wanted = prefix + text.toUpperCase().replace(new RegExp(`^${prefix}`), "");
  if (!values.includes(wanted)) {
    usage(`${flag}: '${text}' is not accepted; one of ${values.map((v) => v.replace(prefix, "")).join(", ")}`);
  }
  return wanted;
}

function request(api, options) {
  const check = {
    document: {
      type: enumValue(api, "DocumentType", "--document-type", options["document-type"]),
      number: options.number,
      country: options.country,
    },
    name: options.name,
  };
  if (options.mode) {
    check.trip = {
      mode: enumValue(api, "TravelMode", "--mode", options.mode),
      train_number: options.train,
      cabin: options.cabin,
    };
    if (options["rail-class"]) check.trip.rail_class = enumValue(api, "RailClass", "--rail-class", options["rail-class"]);
    if (options["ship-class"]) {
      check.trip.ship_class = enumValue(api, "ShipClass", "--ship-class", options["ship-class"], "SHIP_");
    }
  }
  if (options.date) check.travel_date = parseDate(options.date);
  return check;
}

// Dates as YYYY-MM-DD, as `sanction check --json` prints them.
function isoDates(value) {
  if (Array.isArray(value)) return value.map(isoDates);
  if (value === null || typeof value !== "object") return value;
  const keys = Object.keys(value);
  if (keys.length === 3 && ["year", "month", "day"].every((k) => keys.includes(k))) {
    const pad = (n, width) => String(n).padStart(width, "0");
    return `${pad(value.year, 4)}-${pad(value.month, 2)}-${pad(value.day, 2)}`;
  }
  return Object.fromEntries(keys.map((k) => [k, isoDates(value[k])]));
}

function exitCodeFor(error) {
  const codes = grpc.status;
  if (error.code === codes.INVALID_ARGUMENT || error.code === codes.OUT_OF_RANGE) return EXIT.invalid;
  if (error.code === codes.UNAVAILABLE || error.code === codes.DEADLINE_EXCEEDED) return EXIT.unavailable;
  if (error.code === codes.UNAUTHENTICATED || error.code === codes.PERMISSION_DENIED) return EXIT.permission;
  return EXIT.other;
}

function main() {
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        target: { type: "string", default: process.env.SANCTION_LISTEN || "127.0.0.1:50051" },
        timeout: { type: "string", default: "2" },
        "document-type": { type: "string", default: "RESIDENT_ID" },
        number: { type: "string" },
        country: { type: "string", default: "" },
        name: { type: "string", default: "" },
        mode: { type: "string" },
        train: { type: "string", default: "" },
        "rail-class": { type: "string" },
        cabin: { type: "string", default: "" },
        "ship-class": { type: "string" },
        date: { type: "string" },
        "exit-code": { type: "boolean", default: false },
      },
      strict: true,
    });
  } catch (error) {
    usage(error.message.split("\n")[0]);
  }
  const options = parsed.values;
  if (!options.number) usage("--number is required");
  const seconds = Number(options.timeout);
  if (!(seconds > 0)) usage(`--timeout: '${options.timeout}' is not a number of seconds above 0`);

  const api = loadApi();
  const client = new api.RestrictionService(options.target, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  if (process.env.SANCTION_TOKEN) metadata.set("authorization", `Bearer ${process.env.SANCTION_TOKEN}`);
  const deadline = new Date(Date.now() + seconds * 1000);
  client.CheckRestriction(request(api, options), metadata, { deadline }, (error, answer) => {
    client.close();
    if (error) {
      process.stderr.write(`check.js: ${grpc.status[error.code]}: ${error.details}\n`);
      process.exitCode = exitCodeFor(error);
      return;
    }
    process.stdout.write(JSON.stringify(isoDates(answer), null, 2) + "\n");
    process.exitCode = options["exit-code"] && answer.decision === "DENY" ? EXIT.deny : EXIT.ok;
  });
}

main();
