// A dnsmasq lease file: which address the DHCP server gave to which MAC. Local clusters run such a server on
// their guest network; `vm show` reports the addresses it handed out.
import { readFile } from "node:fs/promises";

/** MAC (lower case) → IPv4 address; an unreadable file is no leases. */
export async function readDhcpLeases(path: string): Promise<Map<string, string>> {
  return parseDnsmasqLeases(await readFile(path, "utf8").catch(() => ""));
}

/** Lines of "<expiry> <mac> <ip> <hostname> <client-id>". */
export function parseDnsmasqLeases(text: string): Map<string, string> {
  const leases = new Map<string, string>();
  for (const line of text.split("\n")) {
    const [, mac, ip] = line.split(" ");
    if (mac && ip && /^[0-9a-fA-F:]{17}$/.test(mac)) leases.set(mac.toLowerCase(), ip);
  }
  return leases;
}
