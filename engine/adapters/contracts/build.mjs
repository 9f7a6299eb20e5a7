// Compile every .sol file here with solc-js (offline) into <Name>.json: abi, bytecode,
// compiler version and a hash of the sources, so the committed artifacts can be checked.
//   cd engine/adapters/contracts && npm install && npm run build
import { createHash } from "node:crypto";
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const solc = require("solc");

const sources = {};
for (const file of readdirSync(here).filter((f) => f.endsWith(".sol")).sort()) {
  sources[file] = { content: readFileSync(join(here, file), "utf8") };
}
const findImports = (path) => {
  try {
    return { contents: readFileSync(require.resolve(path), "utf8") };
  } catch (err) {
    return { error: `not found: ${path}` };
  }
};
const input = {
  language: "Solidity",
  sources,
  settings: { optimizer: { enabled: true, runs: 200 }, evmVersion: "cancun",
              outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } } },
};
const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
const errors = (output.errors || []).filter((e) => e.severity === "error");
if (errors.length) {
  for (const e of errors) console.error(e.formattedMessage);
  process.exit(1);
}
for (const [file, contracts] of Object.entries(output.contracts)) {
  if (!sources[file]) continue;
  for (const [name, artifact] of Object.entries(contracts)) {
    const sourceHash = createHash("sha256").update(sources[file].content).digest("hex");
    const out = { contractName: name, compiler: solc.version(), source: file, sourceSha256: sourceHash,
                  abi: artifact.abi, bytecode: "0x" + artifact.evm.bytecode.object };
    writeFileSync(join(here, `${name}.json`), JSON.stringify(out, null, 2) + "\n");
    console.log(`built ${name}.json from ${file} with solc ${solc.version()}`);
  }
}
