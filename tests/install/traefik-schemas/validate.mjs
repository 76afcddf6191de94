// Validates objects against Traefik's CRD schemas, as compiled by the npm package
// @kubernetes-models/traefik (generated from the Traefik Helm chart's crds/; version pinned in
// package-lock.json beside this file). Used by tests/install/test_traefik_schemas.py.
//
//   node validate.mjs NODE_MODULES kinds      -> JSON list of [apiVersion, kind] the package has
//   node validate.mjs NODE_MODULES < objs.json -> JSON list, one entry per object:
//                                                {"known": bool, "errors": [message, ...]}
import { readdirSync, readFileSync, existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [modules, mode] = process.argv.slice(2);
const pkg = join(modules, "@kubernetes-models", "traefik");
if (!existsSync(join(pkg, "package.json"))) {
  console.error(`no @kubernetes-models/traefik under ${modules}: run \`make setup-python\``);
  process.exit(2);
}

// The module of one kind: <group>/<version>/<Kind>.js, exporting a class with static
// apiVersion and kind and a validate() method that throws on errors.
async function kindClass(group, version, kind) {
  const file = join(pkg, group, version, `${kind}.js`);
  if (!/^[a-z0-9.]+$/.test(group) || !/^v[a-z0-9]+$/.test(version) || !/^[A-Za-z0-9]+$/.test(kind)) return null;
  if (!existsSync(file)) return null;
  const cls = (await import(pathToFileURL(file).href))[kind];
  return cls && cls.kind === kind && cls.apiVersion === `${group}/${version}` ? cls : null;
}

if (mode === "kinds") {
  const out = [];
  const dir = (...p) => statSync(join(pkg, ...p)).isDirectory();
  for (const group of readdirSync(pkg).filter((g) => g.includes(".") && dir(g)).sort()) {
    for (const version of readdirSync(join(pkg, group)).filter((v) => /^v/.test(v) && dir(group, v)).sort()) {
      for (const file of readdirSync(join(pkg, group, version)).sort()) {
        const kind = file.replace(/\.js$/, "");
        if (file === kind || kind === "index" || kind.endsWith("List")) continue;
        if (await kindClass(group, version, kind)) out.push([`${group}/${version}`, kind]);
      }
    }
  }
  console.log(JSON.stringify(out));
} else {
  const objects = JSON.parse(readFileSync(0, "utf8"));
  const out = [];
  for (const obj of objects) {
    const [group, version] = String(obj.apiVersion ?? "").split("/");
    const cls = await kindClass(group ?? "", version ?? "", String(obj.kind ?? ""));
    if (!cls) {
      out.push({ known: false, errors: [] });
      continue;
    }
    try {
      new cls(obj).validate();
      out.push({ known: true, errors: [] });
    } catch (e) {
      const details = Array.isArray(e.errors)
        ? e.errors.map((x) => `${x.instancePath || "/"}: ${x.message}`)
        : [String(e.message ?? e)];
      out.push({ known: true, errors: details });
    }
  }
  console.log(JSON.stringify(out));
}
