/** A tiny element builder: text always goes in as text, never as markup (file contents are untrusted). */
type Child = Node | string | number | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attributes: Record<string, string | number | boolean | undefined> = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === false) continue;
    if (name === 'class') element.className = String(value);
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  append(element, children);
  return element;
}

export function append(parent: Element, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    parent.append(typeof c === 'string' || typeof c === 'number' ? String(c) : c);
  }
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (!element) throw new Error(`the page has no #${id}`);
  return element as T;
}

/** A definition list from [term, description, data-field?, data-value?] rows. */
export function definitions(rows: [string, Child, string?, (string | number)?][]): HTMLDListElement {
  const dl = h('dl', { class: 'facts' });
  for (const [term, description, field, value] of rows) {
    dl.append(h('dt', {}, term), h('dd', { 'data-field': field, 'data-value': value === undefined ? undefined : String(value) }, description));
  }
  return dl;
}

/** A table with a caption, column headers and rows (the first cell of each row a row header). */
export function table(caption: string, columns: string[], rows: Child[][], options: { rowHeaders?: boolean; className?: string } = {}): HTMLElement {
  const t = h('table', { class: options.className });
  t.append(h('caption', {}, caption));
  const head = h('tr');
  for (const c of columns) head.append(h('th', { scope: 'col' }, c));
  t.append(h('thead', {}, head));
  const body = h('tbody');
  for (const row of rows) {
    const tr = h('tr');
    row.forEach((cell, i) => tr.append(i === 0 && options.rowHeaders !== false ? h('th', { scope: 'row' }, cell) : h('td', {}, cell)));
    body.append(tr);
  }
  t.append(body);
  return h('div', { class: 'table-wrap' }, t);
}
