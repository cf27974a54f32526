// Builds the Debian package out/nanocdn_<version>_all.deb: the node bundled
// in one file, its production dependencies (with their licences), the unit,
// an example configuration.
import { execFileSync } from "node:child_process";
import { chmodSync, cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { exampleConfig } from "../src/adapters/node/cli/config-help.ts";
import { bundleNode } from "./bundle.ts";

const ROOT = resolve(import.meta.dirname, "..");
const OUT = join(ROOT, "out");
const STAGE = join(OUT, "deb-root");
const LIB = join(STAGE, "usr/lib/nanocdn");
const { version, engines } = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string; engines: { node: string } };
/** The Node.js the code needs (package.json's engines, ">=X"), as the package's dependency on Debian's nodejs. */
const nodeVersion = /^>=\s*([\d.]+)$/.exec(engines.node)?.[1];
if (!nodeVersion) throw new Error(`package.json engines.node is ${engines.node}; the package needs ">=X.Y.Z"`);

const run = (command: string, args: string[], cwd = ROOT) => execFileSync(command, args, { cwd, stdio: ["ignore", "inherit", "inherit"] });
const put = (from: string, to: string, mode = 0o644) => {
  mkdirSync(join(STAGE, to, ".."), { recursive: true });
  cpSync(join(ROOT, from), join(STAGE, to));
  chmodSync(join(STAGE, to), mode);
};

rmSync(STAGE, { recursive: true, force: true });
mkdirSync(LIB, { recursive: true });
cpSync(join(ROOT, "bin"), join(LIB, "bin"), { recursive: true });
// What the node runs, bundled afresh from the sources: the bin imports nothing else of dist/.
await bundleNode(join(LIB, "dist"));
for (const file of ["package.json", "package-lock.json"]) cpSync(join(ROOT, file), join(LIB, file));
run("npm", ["ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline"], LIB);
rmSync(join(LIB, "package-lock.json"));

put("packaging/nanocdn", "usr/bin/nanocdn", 0o755);
put("packaging/nanocdn.service", "lib/systemd/system/nanocdn.service");
put("README.md", "usr/share/doc/nanocdn/README.md");
// Debian policy 12.5: a package carries its copyright and license, in the machine-readable format.
const license = readFileSync(join(ROOT, "LICENSE"), "utf8").trim().split("\n");
const copyright = license.find((line) => line.startsWith("Copyright (c) "))!.slice("Copyright (c) ".length);
writeFileSync(
  join(STAGE, "usr/share/doc/nanocdn/copyright"),
  [
    "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/",
    "Upstream-Name: nanocdn",
    "",
    "Files: *",
    `Copyright: ${copyright}`,
    "License: MIT",
    "",
    "Files: usr/lib/nanocdn/node_modules/*",
    "Copyright: the authors of each package",
    "License: various",
    " The license of each package is in its folder (its package.json and LICENSE file).",
    "",
    "Files: usr/lib/nanocdn/dist/adapters/node/cli/nanocdn.mjs",
    `Copyright: ${copyright}, and the authors of each package it holds`,
    "License: MIT and various",
    " The code of nanocdn (MIT) bundled with the npm packages it runs; each package's",
    " license is in its folder under usr/lib/nanocdn/node_modules/.",
    "",
    "License: MIT",
    ...license.slice(license.indexOf("") + 1).map((line) => (line === "" ? " ." : ` ${line}`)),
    "",
  ].join("\n"),
);
mkdirSync(join(STAGE, "etc/nanocdn"), { recursive: true });
writeFileSync(
  join(STAGE, "etc/nanocdn/nanocdn.toml"),
  exampleConfig(
    { data: "/var/lib/nanocdn", htpasswd: "/etc/nanocdn/htpasswd" },
    [
      "nanocdn's configuration, read by nanocdn.service (and by every nanocdn command).",
      "Every key is listed with its default; `nanocdn serve --help` says the same.",
      "Check a change with `sudo -u nanocdn nanocdn check-config` (as the node's user: it reads",
      "what the node may), then `systemctl reload nanocdn` (users, log_level, TLS files) or",
      "`systemctl restart nanocdn` (everything else).",
    ].join("\n"),
  ),
);

mkdirSync(join(STAGE, "DEBIAN"));
const size = Number(execFileSync("du", ["-sk", "--exclude=DEBIAN", STAGE], { encoding: "utf8" }).split("\t")[0]);
writeFileSync(
  join(STAGE, "DEBIAN/control"),
  readFileSync(join(ROOT, "packaging/debian/control"), "utf8").replace("@VERSION@", version).replace("@SIZE@", String(size)).replace("@NODE@", nodeVersion),
);
writeFileSync(join(STAGE, "DEBIAN/conffiles"), "/etc/nanocdn/nanocdn.toml\n");
for (const script of ["postinst", "prerm", "postrm"]) put(`packaging/debian/${script}`, `DEBIAN/${script}`, 0o755);

const deb = join(OUT, `nanocdn_${version}_all.deb`);
run("dpkg-deb", ["--root-owner-group", "-Zxz", "--build", STAGE, deb]);
rmSync(STAGE, { recursive: true, force: true });
console.log(deb);
