// Starts `netspec lsp` for .net files; everything else (diagnostics, hover, definitions,
// completion, formatting) comes from the server.
"use strict";
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const [command, ...args] = vscode.workspace.getConfiguration("netspec").get("command");
  client = new LanguageClient(
    "netspec",
    "netspec language server",
    { command, args },
    { documentSelector: [{ scheme: "file", language: "netspec" }] }
  );
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
