// Builds the Debian package out/nanocdn_<version>_all.deb: the node bundled
// in one file with its npm packages (whose licences go into the package's
// documentation), the unit, an example configuration.
import { execFileSync } from "node:child_process";
import { chmodSync, cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
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

const run = (command: string, args: string[]) => execFileSync(command, args, { cwd: ROOT, stdio: ["ignore", "inherit", "inherit"] });
const put = (from: string, to: string, mode = 0o644) => {
  mkdirSync(join(STAGE, to, ".."), { recursive: true });
  cpSync(join(ROOT, from), join(STAGE, to));
  chmodSync(join(STAGE, to), mode);
};

rmSync(STAGE, { recursive: true, force: true });
mkdirSync(LIB, { recursive: true });
cpSync(join(ROOT, "bin"), join(LIB, "bin"), { recursive: true });
// What the node runs, bundled afresh from the sources: the bin imports nothing else of dist/,
// and nothing of node_modules/. package.json says the version.
const bundled = await bundleNode(join(LIB, "dist"));
cpSync(join(ROOT, "package.json"), join(LIB, "package.json"));
// Each bundled package's package.json (name, version, authors, licence) and licence files; a
// package without one states its licence in its README.
const PACKAGES_DOC = "usr/share/doc/nanocdn/packages";
const LICENCE_FILE = /^(licen[cs]e|copying|notice)\b/i;
const bundledLicences = new Set<string>();
for (const folder of bundled) {
  const meta = JSON.parse(readFileSync(join(folder, "package.json"), "utf8")) as { name: string; version: string; license?: string };
  // Named in the copyright file's License fields, which take short names joined by "and".
  if (!/^[A-Za-z0-9.+-]+$/.test(meta.license ?? ""))
    throw new Error(`${meta.name}: its licence (${meta.license}) is not one short name; name it in the copyright file by hand`);
  bundledLicences.add(meta.license!);
  const files = readdirSync(folder);
  const licences = files.filter((file) => LICENCE_FILE.test(file));
  const texts = licences.length > 0 ? licences : files.filter((file) => /^readme\b/i.test(file));
  if (texts.length === 0) throw new Error(`${meta.name}: no licence file and no README to carry its licence from ${folder}`);
  const into = join(STAGE, PACKAGES_DOC, `${meta.name}@${meta.version}`);
  mkdirSync(into, { recursive: true });
  for (const file of ["package.json", ...texts]) cpSync(join(folder, file), join(into, file));
}
/** Licence texts every Debian system holds (base-files). */
const COMMON_LICENSES = new Set(["Apache-2.0", "CC0-1.0", "MPL-2.0"]);
const otherLicences = [...bundledLicences].filter((name) => name !== "MIT").sort();
const allLicences = ["MIT", ...otherLicences].join(" and ");

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
    "Files: usr/lib/nanocdn/dist/adapters/node/cli/nanocdn.mjs",
    `Copyright: ${copyright}, and the authors of each package it holds`,
    `License: ${allLicences}`,
    "Comment: The code of nanocdn (MIT) bundled with the npm packages it runs. Each",
    ` package has a folder <name>@<version> in /${PACKAGES_DOC}/: its package.json`,
    " (authors, the license that applies to it) and its license text.",
    "",
    `Files: ${PACKAGES_DOC}/*`,
    "Copyright: the authors of each package, as its folder names them",
    `License: ${allLicences}`,
    "Comment: Each folder's license is the one its package.json names.",
    "",
    "License: MIT",
    ...license.slice(license.indexOf("") + 1).map((line) => (line === "" ? " ." : ` ${line}`)),
    ...otherLicences.flatMap((name) => [
      "",
      `License: ${name}`,
      COMMON_LICENSES.has(name)
        ? ` On Debian systems, the complete text is in /usr/share/common-licenses/${name}.`
        : ` The complete text, with each package's copyright notice, is in the folder of each package under this license in /${PACKAGES_DOC}/.`,
    ]),
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
