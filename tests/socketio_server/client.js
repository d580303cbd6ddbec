// The official Socket.IO client (npm socket.io-client 4.x), driven by the test suite.
//
//   node client.js <url> '<options JSON>'
//
// Options go to io() untouched on top of the client's defaults (the tests pass `auth` only).
// Everything the client sees is printed to stdout as one JSON object per line; commands arrive on
// stdin, one JSON object per line: {"emit": name, "args": [...], "ack": true, "binary": true}
// (binary appends a Buffer), {"disconnect": true}.
"use strict";

const readline = require("node:readline");
const { io } = require("socket.io-client");

const [url, optionsJson] = process.argv.slice(2);
const socket = io(url, JSON.parse(optionsJson || "{}"));

function report(event, fields) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");
}

socket.io.on("open", () => {
  socket.io.engine.on("upgrade", (transport) => report("upgrade", { transport: transport.name }));
});
socket.on("connect", () => {
  report("connect", { id: socket.id, transport: socket.io.engine.transport.name });
});
socket.on("connect_error", (err) => report("connect_error", { message: err.message }));
socket.on("disconnect", (reason) => report("disconnect", { reason }));
socket.on("registered", (payload) => report("registered", { payload }));
socket.on("RECEIVE_STREAM", (payload) => report("RECEIVE_STREAM", { payload }));

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line);
  if (command.disconnect) {
    socket.disconnect();
    report("closed", {});
    // Give a polling transport's last POST (the DISCONNECT and CLOSE packets) time to leave.
    setTimeout(() => process.exit(0), 300);
    return;
  }
  if (command.emit) {
    const args = command.args || [];
    if (command.binary) args.push(Buffer.from([1, 2, 3]));
    if (command.ack) {
      socket.emit(command.emit, ...args, (response) =>
        report("ack", { name: command.emit, response }),
      );
    } else {
      socket.emit(command.emit, ...args);
    }
  }
});
process.stdin.on("end", () => process.exit(0));
