// A Node client no one here wrote a server for: it reads the served OpenAPI document, finds the
// command routes there, and walks one onboarding from nothing to StoreIntegration with built-in fetch.
// Usage: KEYTRAIL_URL=http://127.0.0.1:8080 KEYTRAIL_TOKEN=... node flow.mjs STREAM EMAIL
// Prints one JSON line: the states it went through, the key's hint and the gateway check's status.

const base = process.env.KEYTRAIL_URL;
const token = process.env.KEYTRAIL_TOKEN;
const [stream, email] = process.argv.slice(2);
if (!base || !token || !stream || !email) {
  console.error("usage: KEYTRAIL_URL=... KEYTRAIL_TOKEN=... node flow.mjs STREAM EMAIL");
  process.exit(2);
}

const doc = await (await fetch(`${base}/openapi.json`)).json();
if (!doc.openapi.startsWith("3.1")) throw new Error(`OpenAPI ${doc.openapi}, expected 3.1`);

// The command routes, by trigger, as the document names them.
const commands = {};
for (const [path, operations] of Object.entries(doc.paths)) {
  const match = /^\/v1\/onboardings\/\{stream\}\/([a-z_]+)$/.exec(path);
  if (match && operations.post) commands[match[1]] = path;
}
for (const trigger of ["access", "register", "generate_key", "copy_key", "save_config", "proceed"]) {
  if (!commands[trigger]) throw new Error(`the OpenAPI document has no route for ${trigger}`);
}

async function command(trigger, body, headers = {}) {
  const url = base + commands[trigger].replace("{stream}", encodeURIComponent(stream));
  const response = await fetch(url, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json", ...headers },
    body: JSON.stringify(body ?? {}),
  });
  const out = await response.json();
  if (!response.ok) throw new Error(`${trigger}: ${response.status} ${out.type}: ${out.detail}`);
  if (response.headers.get("etag") !== `"${out.version}"`) throw new Error(`${trigger}: ETag ${response.headers.get("etag")}`);
  return { out, response };
}

const states = [];
states.push((await command("access")).out.state);
states.push((await command("register", { email, password: "correct horse battery staple", company: "Acme" })).out.state);
const generated = await command("generate_key", { description: "Amazon Sales Channel" }, { "Idempotency-Key": `gen-${stream}` });
if (generated.response.headers.get("cache-control") !== "no-store") throw new Error("generate_key is cacheable");
states.push(generated.out.state);
const copied = await command("copy_key");
if (copied.out.key !== generated.out.key) throw new Error("copy_key copied another key");
states.push(copied.out.state);
states.push((await command("save_config", { key: generated.out.key })).out.state);
const version = (await command("access")).out.version;
states.push("Validated");
states.push((await command("proceed", {}, { "If-Match": `"${version}"` })).out.state);

// A stale If-Match is a problem+json 412, as the document says.
const stale = await fetch(base + commands.access.replace("{stream}", stream), {
  method: "POST",
  headers: { Authorization: `Bearer ${token}`, "If-Match": '"1"' },
});
const problem = await stale.json();
if (stale.status !== 412 || stale.headers.get("content-type") !== "application/problem+json") {
  throw new Error(`a stale If-Match got ${stale.status} ${stale.headers.get("content-type")}`);
}

const gateway = await fetch(`${base}/gateway/apikeycheck`, { headers: { "magento-api-key": generated.out.key } });
console.log(JSON.stringify({ states, hint: generated.out.hint, gateway: gateway.status, stale: problem.type }));
