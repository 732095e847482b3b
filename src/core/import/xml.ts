// A small, safe XML reader for libvirt domain files: elements, attributes, text, comments, CDATA,
// processing instructions and the XML declaration. No DTD and no entity expansion beyond the five predefined
// entities and character references, so a hostile file cannot expand or reach outside itself. Errors carry
// the line and column. Written here rather than pulled in as a dependency: the subset is small and fixed.
import { own, type Diagnostic, type Located } from "./crm-syntax.js";

export interface XmlElement extends Located {
  name: string;
  attributes: Record<string, string>;
  children: XmlElement[];
  /** The text directly inside the element (CDATA included), entities decoded, not trimmed. */
  text: string;
}

class XmlSyntaxError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message);
  }
}

/** Parses an XML document; on a syntax error returns no root and one error diagnostic. */
export function parseXml(text: string): { root?: XmlElement; diagnostics: Diagnostic[] } {
  const reader = new XmlReader(text);
  try {
    return { root: reader.readDocument(), diagnostics: [] };
  } catch (error) {
    if (!(error instanceof XmlSyntaxError)) throw error;
    const at = reader.position(error.offset);
    return { diagnostics: [{ ...at, severity: "error", message: error.message }] };
  }
}

const NAME = /[A-Za-z_:][A-Za-z0-9_:.-]*/y;
const PREDEFINED_ENTITIES: Record<string, string> = { lt: "<", gt: ">", amp: "&", quot: '"', apos: "'" };

class XmlReader {
  private offset = 0;
  private readonly lineStarts = [0];

  constructor(private readonly text: string) {
    for (let index = 0; index < text.length; index++)
      if (text[index] === "\n") this.lineStarts.push(index + 1);
  }

  position(offset: number): Located {
    let low = 0;
    let high = this.lineStarts.length - 1;
    while (low < high) {
      const middle = Math.ceil((low + high) / 2);
      if (this.lineStarts[middle]! <= offset) low = middle;
      else high = middle - 1;
    }
    return { line: low + 1, column: offset - this.lineStarts[low]! + 1 };
  }

  readDocument(): XmlElement {
    if (this.text.startsWith("\uFEFF")) this.offset = 1;
    if (this.isDeclarationAt(this.offset)) this.readUntil("?>", "XML declaration");
    this.skipMisc();
    if (!this.at("<")) this.fail("expected the root element");
    const root = this.readElement();
    this.skipMisc();
    if (this.offset < this.text.length) this.fail("unexpected content after the root element");
    return root;
  }

  /** Reads an element and its content with an explicit stack, so deep nesting cannot overflow the call stack. */
  private readElement(): XmlElement {
    const { element: root, selfClosed } = this.readStartTag();
    const open = selfClosed ? [] : [root];
    while (open.length > 0) {
      const current = open[open.length - 1]!;
      if (this.offset >= this.text.length)
        this.fail(`<${current.name}> (line ${current.line}) is not closed`);
      if (this.at("</")) {
        this.readEndTag(current);
        open.pop();
      } else if (this.at("<!--")) this.readUntil("-->", "comment");
      else if (this.at("<![CDATA[")) current.text += this.readUntil("]]>", "CDATA section").slice(9);
      else if (this.at("<?")) this.readUntil("?>", "processing instruction");
      else if (this.at("<!")) this.fail("DTDs and declarations are not accepted");
      else if (this.at("<")) {
        const { element, selfClosed: childClosed } = this.readStartTag();
        current.children.push(element);
        if (!childClosed) open.push(element);
      } else {
        const end = this.text.indexOf("<", this.offset);
        const stop = end < 0 ? this.text.length : end;
        current.text += this.decode(this.text.slice(this.offset, stop), this.offset);
        this.offset = stop;
      }
    }
    return root;
  }

  private readStartTag(): { element: XmlElement; selfClosed: boolean } {
    const start = this.offset;
    this.offset++; // "<"
    const element: XmlElement = {
      name: this.readName(),
      attributes: {},
      children: [],
      text: "",
      ...this.position(start),
    };
    for (;;) {
      const spaced = this.skipSpace();
      if (this.at("/>") || this.at(">")) {
        const selfClosed = this.at("/>");
        this.offset += selfClosed ? 2 : 1;
        return { element, selfClosed };
      }
      if (this.offset >= this.text.length) this.fail(`<${element.name}> is not closed`, start);
      if (!spaced) this.fail("expected whitespace, '>' or '/>'");
      this.readAttribute(element);
    }
  }

  private readAttribute(element: XmlElement): void {
    const nameOffset = this.offset;
    const name = this.readName();
    this.skipSpace();
    this.expect("=");
    this.skipSpace();
    const quote = this.text[this.offset];
    if (quote !== '"' && quote !== "'") this.fail(`expected a quoted value for attribute "${name}"`);
    const close = this.text.indexOf(quote, this.offset + 1);
    if (close < 0) this.fail(`unterminated value of attribute "${name}"`);
    const raw = this.text.slice(this.offset + 1, close);
    const less = raw.indexOf("<");
    if (less >= 0) this.fail("'<' is not allowed in an attribute value", this.offset + 1 + less);
    if (Object.hasOwn(element.attributes, name) || name === "__proto__") {
      this.fail(`attribute "${name}" is given twice`, nameOffset);
    }
    // XML normalises whitespace characters in attribute values to spaces.
    element.attributes[name] = this.decode(raw.replace(/[\t\n\r]/g, " "), this.offset + 1);
    this.offset = close + 1;
  }

  private readEndTag(current: XmlElement): void {
    const start = this.offset;
    this.offset += 2;
    const name = this.readName();
    this.skipSpace();
    this.expect(">");
    if (name !== current.name) {
      this.fail(`expected </${current.name}> (opened on line ${current.line}), found </${name}>`, start);
    }
  }

  /** Replaces entity and character references; anything else after '&' is an error (no DTD entities). */
  private decode(raw: string, offset: number): string {
    return raw.replace(/&([^;]*);?/g, (match, name: string, index: number) => {
      const at = offset + index;
      if (!match.endsWith(";") || /\s/.test(name)) this.fail("'&' must start a reference such as &amp;", at);
      const code = /^#x[0-9a-f]+$/i.test(name)
        ? parseInt(name.slice(2), 16)
        : /^#\d+$/.test(name)
          ? Number(name.slice(1))
          : undefined;
      if (code === undefined) {
        const entity = own(PREDEFINED_ENTITIES, name);
        if (entity === undefined) this.fail(`unknown entity &${name}; (DTD entities are not expanded)`, at);
        return entity;
      }
      if (!isXmlChar(code)) this.fail(`&${name}; is not a valid XML character`, at);
      return String.fromCodePoint(code);
    });
  }

  private skipMisc(): void {
    for (;;) {
      this.skipSpace();
      if (this.at("<!--")) this.readUntil("-->", "comment");
      else if (this.isDeclarationAt(this.offset)) this.fail("the XML declaration must come first");
      else if (this.at("<?")) this.readUntil("?>", "processing instruction");
      else if (this.at("<!")) this.fail("DTDs and declarations are not accepted");
      else return;
    }
  }

  private isDeclarationAt(offset: number): boolean {
    return /^<\?xml[\s?]/.test(this.text.slice(offset, offset + 6));
  }

  private readUntil(terminator: string, what: string): string {
    const end = this.text.indexOf(terminator, this.offset + 2);
    if (end < 0) this.fail(`unterminated ${what}`);
    const content = this.text.slice(this.offset, end);
    this.offset = end + terminator.length;
    return content;
  }

  private readName(): string {
    NAME.lastIndex = this.offset;
    const match = NAME.exec(this.text);
    if (!match) this.fail("expected a name");
    this.offset += match[0].length;
    return match[0];
  }

  private skipSpace(): boolean {
    const start = this.offset;
    while (/[ \t\r\n]/.test(this.text[this.offset] ?? "")) this.offset++;
    return this.offset > start;
  }

  private at(literal: string): boolean {
    return this.text.startsWith(literal, this.offset);
  }

  private expect(literal: string): void {
    if (!this.at(literal)) this.fail(`expected '${literal}'`);
    this.offset += literal.length;
  }

  private fail(message: string, offset = this.offset): never {
    throw new XmlSyntaxError(message, offset);
  }
}

function isXmlChar(code: number): boolean {
  return (
    code === 0x9 ||
    code === 0xa ||
    code === 0xd ||
    (code >= 0x20 && code <= 0xd7ff) ||
    (code >= 0xe000 && code <= 0xfffd) ||
    (code >= 0x10000 && code <= 0x10ffff)
  );
}

export function child(element: XmlElement, name: string): XmlElement | undefined {
  return element.children.find((candidate) => candidate.name === name);
}

/** `<interface type='bridge'>`: the element with its first attribute, enough to recognise it. */
export function describe(element: XmlElement): string {
  const [first] = Object.entries(element.attributes);
  return first ? `<${element.name} ${first[0]}='${first[1]}'>` : `<${element.name}>`;
}
