// Building the page's elements. Content from the server is only ever inserted as text: `h` turns
// strings into text nodes and sets attributes one by one, so no message, name or room name can
// become markup.

/** An element: `h('p', {class: 'x'}, 'text', child)`. Attributes with `null`/`false` are left out. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value == null || value === false) continue;
    if (name.startsWith('on')) throw new Error('handlers are attached with addEventListener');
    element.setAttribute(name, value === true ? '' : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child == null || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Removes a string's control characters (a server should never send them in names). */
export function clean(text) {
  return String(text ?? '').replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, '');
}

export const byId = (id) => document.getElementById(id);

export const reducedMotion = () => matchMedia('(prefers-reduced-motion: reduce)').matches;

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

/** A `<time>` for a time in milliseconds: the time of day, with the full date as its title. */
export function time(milliseconds) {
  const date = new Date(milliseconds);
  return h('time', { datetime: date.toISOString(), title: dayFormat.format(date) }, timeFormat.format(date));
}
