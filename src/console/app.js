// The console's entry module: it asks the node that served it who leads, through the public API.
const main = document.getElementById("app");
const resp = await fetch("/cluster/status");
main.textContent = resp.ok ? `node ${(await resp.json()).data.id}` : `status ${resp.status}`;
