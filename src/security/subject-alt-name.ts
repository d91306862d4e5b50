/** One entry of a subjectaltname string: its type ("URI", "DNS", "IP Address", …) and value. */
export interface SubjectAltNameEntry {
  type: string;
  value: string;
}

// Reads the JSON string that starts at `start`; returns it and the index after its closing quote.
function readQuoted(san: string, start: number): { text: string; end: number } | undefined {
  let j = start + 1;
  while (j < san.length && san[j] !== '"') j += san[j] === "\\" ? 2 : 1;
  if (j >= san.length) return undefined;
  try {
    return { text: JSON.parse(san.slice(start, j + 1)) as string, end: j + 1 };
  } catch {
    return undefined;
  }
}

/**
 * Splits Node's subjectaltname ("URI:spiffe://…, DNS:localhost") into entries; undefined
 * if it is malformed. Since CVE-2021-44532 Node JSON-quotes a value after its "TYPE:"
 * prefix when it holds a comma, quote, backslash or control character (a comma becomes
 * \u002c), so unquoted values never hold a comma and a forged SAN cannot smuggle in a
 * second entry. See https://nodejs.org/api/crypto.html#x509subjectaltname
 */
export function parseSubjectAltName(san: string): SubjectAltNameEntry[] | undefined {
  const out: SubjectAltNameEntry[] = [];
  let i = 0;
  while (i < san.length) {
    if (out.length > 0) {
      if (!san.startsWith(", ", i)) return undefined;
      i += 2;
    }
    const colon = san.indexOf(":", i);
    const comma = san.indexOf(",", i);
    if (colon <= i || (comma >= 0 && comma < colon)) return undefined;
    const type = san.slice(i, colon);
    i = colon + 1;
    if (san[i] === '"') {
      const quoted = readQuoted(san, i);
      if (!quoted) return undefined;
      out.push({ type, value: quoted.text });
      i = quoted.end;
    } else {
      const end = comma < 0 ? san.length : comma;
      out.push({ type, value: san.slice(i, end) });
      i = end;
    }
  }
  return out;
}
