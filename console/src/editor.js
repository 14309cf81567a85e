// sluice console code editor: CodeMirror 6 attached to plain <textarea> elements.
//
// Built by `make assets` (console/build.mjs) into src/sluice/console/static/vendor/editor.js.
//
// API (window.SluiceEditor):
//   attach(textarea, { language: 'python' | 'javascript' | 'json', readOnly?: boolean, tabIndents?: boolean })
//     -> { view, getValue(), setValue(text), markLine(lineNumber, message), clearMarks(), focus() }
//   attachAll(root = document) -> editors for every textarea[data-editor] (data-editor="python|javascript|json",
//     optional data-error-line="N" and data-error-message="..." -> markLine, data-readonly or the readonly
//     attribute -> readOnly, data-tab-indents -> tabIndents). Runs on DOMContentLoaded.
//
// Keyboard: Tab is NOT bound by default, so Tab / Shift-Tab move focus in and out of the editor like any
// other control; indent with Ctrl-] / Ctrl-[ (Cmd on macOS), Enter keeps the indentation. With tabIndents
// (opt-in) Tab indents, and Escape then Tab leaves the editor (CodeMirror's tab focus mode; Ctrl-M toggles it).

import { EditorState, RangeSet, StateEffect, StateField } from '@codemirror/state';
import {
  Decoration,
  EditorView,
  GutterMarker,
  drawSelection,
  gutter,
  highlightActiveLine,
  highlightActiveLineGutter,
  highlightSpecialChars,
  keymap,
  lineNumbers,
} from '@codemirror/view';
import { defaultKeymap, history, historyKeymap, indentWithTab } from '@codemirror/commands';
import {
  LanguageSupport,
  bracketMatching,
  defaultHighlightStyle,
  indentOnInput,
  syntaxHighlighting,
} from '@codemirror/language';
// The bare language definitions (parser, highlighting, indentation, folding, comment tokens): python() and
// javascript() would only add completion sources, which this editor doesn't enable (and ~20 KB).
import { pythonLanguage } from '@codemirror/lang-python';
import { javascriptLanguage } from '@codemirror/lang-javascript';
import { jsonLanguage } from '@codemirror/lang-json';

const LANGUAGES = {
  python: () => new LanguageSupport(pythonLanguage),
  javascript: () => new LanguageSupport(javascriptLanguage),
  js: () => new LanguageSupport(javascriptLanguage),
  json: () => new LanguageSupport(jsonLanguage),
};

// ---- error line marks -------------------------------------------------------------------------------

class ErrorMarker extends GutterMarker {
  constructor(message) {
    super();
    this.message = message;
  }
  eq(other) {
    return other.message === this.message;
  }
  toDOM() {
    const span = document.createElement('span');
    span.className = 'cm-error-marker';
    span.textContent = '●';
    span.title = this.message;
    span.setAttribute('aria-label', 'Error: ' + this.message);
    return span;
  }
}

const addMark = StateEffect.define({
  map: (value, changes) => ({ pos: changes.mapPos(value.pos), message: value.message }),
});
const clearMarksEffect = StateEffect.define();

const marksField = StateField.define({
  create: () => ({ lines: Decoration.none, gutter: RangeSet.empty }),
  update(value, tr) {
    let lines = value.lines.map(tr.changes);
    let markers = value.gutter.map(tr.changes);
    for (const effect of tr.effects) {
      if (effect.is(clearMarksEffect)) {
        lines = Decoration.none;
        markers = RangeSet.empty;
      } else if (effect.is(addMark)) {
        const { pos, message } = effect.value;
        lines = lines.update({
          add: [
            Decoration.line({
              class: 'cm-error-line',
              attributes: { title: message, 'data-error-message': message },
            }).range(pos),
          ],
        });
        markers = markers.update({ add: [new ErrorMarker(message).range(pos)] });
      }
    }
    return { lines, gutter: markers };
  },
  provide: (field) => EditorView.decorations.from(field, (value) => value.lines),
});

const errorGutter = gutter({
  class: 'cm-error-gutter',
  markers: (view) => view.state.field(marksField).gutter,
});

// ---- look -------------------------------------------------------------------------------------------

const theme = EditorView.theme({
  '&': {
    border: '1px solid #8a8a8a',
    borderRadius: '4px',
    fontSize: '14px',
    backgroundColor: '#fff',
    color: '#1a1a1a',
  },
  '&.cm-focused': {
    outline: '2px solid #1a5fb4',
    outlineOffset: '1px',
  },
  '.cm-scroller': {
    fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace',
    lineHeight: '1.45',
    overflow: 'auto',
  },
  '.cm-content': { minHeight: 'var(--sluice-editor-min-height, 12em)' },
  '.cm-gutters': { backgroundColor: '#f4f4f4', color: '#555', borderRight: '1px solid #ddd' },
  '.cm-error-gutter': { width: '1.2em' },
  '.cm-error-gutter .cm-gutterElement': { padding: '0 2px', textAlign: 'center' },
  '.cm-error-marker': { color: '#c01c28', cursor: 'default' },
  '.cm-error-line': { backgroundColor: 'rgba(224, 27, 36, 0.14)', boxShadow: 'inset 3px 0 0 #c01c28' },
  '&.cm-readonly .cm-content': { caretColor: 'transparent' },
});

// ---- labels -----------------------------------------------------------------------------------------

function labelFor(textarea) {
  const own = textarea.getAttribute('aria-label');
  if (own) return own;
  const labelledBy = textarea.getAttribute('aria-labelledby');
  if (labelledBy) {
    const text = labelledBy
      .split(/\s+/)
      .map((id) => document.getElementById(id))
      .filter(Boolean)
      .map((el) => el.textContent.trim())
      .join(' ')
      .trim();
    if (text) return text;
  }
  const labels = textarea.labels ? Array.from(textarea.labels) : [];
  if (!labels.length && textarea.id) {
    const esc = window.CSS && CSS.escape ? CSS.escape(textarea.id) : textarea.id;
    labels.push(...document.querySelectorAll('label[for="' + esc + '"]'));
  }
  const text = labels.map((l) => l.textContent.trim()).join(' ').replace(/\s+/g, ' ').trim();
  if (text) return text;
  return textarea.getAttribute('placeholder') || textarea.name || 'Code editor';
}

// ---- attach -----------------------------------------------------------------------------------------

function attach(textarea, options = {}) {
  if (!textarea || textarea.tagName !== 'TEXTAREA') {
    throw new TypeError('SluiceEditor.attach: a <textarea> element is required');
  }
  if (textarea.sluiceEditor) return textarea.sluiceEditor;

  const language = String(options.language || textarea.dataset.editor || 'python').toLowerCase();
  const readOnly = Boolean(options.readOnly);
  const tabIndents = Boolean(options.tabIndents);

  const contentAttrs = {
    'aria-label': labelFor(textarea),
    spellcheck: 'false',
    autocorrect: 'off',
    autocapitalize: 'off',
  };
  const describedBy = textarea.getAttribute('aria-describedby');
  if (describedBy) contentAttrs['aria-describedby'] = describedBy;
  if (readOnly) contentAttrs['aria-readonly'] = 'true';
  if (textarea.required) {
    // A hidden required control would block the form submit with an unfocusable error.
    contentAttrs['aria-required'] = 'true';
    textarea.required = false;
  }
  if (textarea.getAttribute('aria-invalid')) contentAttrs['aria-invalid'] = textarea.getAttribute('aria-invalid');

  const syncToTextarea = EditorView.updateListener.of((update) => {
    if (!update.docChanged) return;
    textarea.value = update.state.doc.toString();
    textarea.dispatchEvent(new Event('input', { bubbles: true }));
  });

  const keys = [...defaultKeymap, ...historyKeymap];
  if (tabIndents && !readOnly) keys.push(indentWithTab);

  const extensions = [
    errorGutter,
    lineNumbers(),
    highlightActiveLineGutter(),
    highlightSpecialChars(),
    history(),
    drawSelection(),
    EditorState.allowMultipleSelections.of(false),
    indentOnInput(),
    syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
    bracketMatching(),
    highlightActiveLine(),
    keymap.of(keys),
    marksField,
    theme,
    EditorView.contentAttributes.of(contentAttrs),
    EditorView.editorAttributes.of({ class: 'sluice-editor' + (readOnly ? ' cm-readonly' : '') }),
    EditorState.tabSize.of(4),
    syncToTextarea,
  ];
  const lang = LANGUAGES[language];
  if (lang) extensions.push(lang());
  // Read-only keeps the content focusable and selectable (for keyboard and screen-reader users); it only
  // refuses changes.
  if (readOnly) extensions.push(EditorState.readOnly.of(true));

  const view = new EditorView({
    state: EditorState.create({ doc: textarea.value, extensions }),
  });
  const rows = parseInt(textarea.getAttribute('rows') || '', 10);
  if (rows > 0) view.dom.style.setProperty('--sluice-editor-min-height', rows * 1.45 + 'em');

  textarea.insertAdjacentElement('afterend', view.dom);
  textarea.hidden = true;
  textarea.style.display = 'none';
  textarea.setAttribute('aria-hidden', 'true');
  textarea.tabIndex = -1;

  // Clicking a <label for=textarea> focuses the editor instead of the hidden textarea.
  const labels = textarea.labels ? Array.from(textarea.labels) : [];
  for (const label of labels) {
    label.addEventListener('click', (event) => {
      event.preventDefault();
      view.focus();
    });
  }
  // A form reset puts the textarea's default value back: mirror it in the editor.
  if (textarea.form) {
    textarea.form.addEventListener('reset', () => {
      setTimeout(() => api.setValue(textarea.defaultValue), 0);
    });
  }

  const api = {
    view,
    getValue() {
      return view.state.doc.toString();
    },
    setValue(text) {
      const value = text == null ? '' : String(text);
      view.dispatch({
        changes: { from: 0, to: view.state.doc.length, insert: value },
        effects: clearMarksEffect.of(null),
      });
      textarea.value = value;
    },
    markLine(lineNumber, message) {
      const doc = view.state.doc;
      let n = parseInt(lineNumber, 10);
      if (!Number.isFinite(n)) return;
      n = Math.min(Math.max(n, 1), doc.lines);
      const line = doc.line(n);
      const text = message == null || message === '' ? 'Error on line ' + n : String(message);
      view.dispatch({
        effects: [
          addMark.of({ pos: line.from, message: text }),
          EditorView.scrollIntoView(line.from, { y: 'center' }),
          EditorView.announce.of('Line ' + n + ': ' + text),
        ],
      });
    },
    clearMarks() {
      view.dispatch({ effects: clearMarksEffect.of(null) });
    },
    focus() {
      view.focus();
    },
  };
  textarea.sluiceEditor = api;
  view.dom.sluiceEditor = api;
  return api;
}

function truthyData(value) {
  return value != null && value !== 'false' && value !== '0';
}

function attachAll(root) {
  const scope = root || document;
  const editors = [];
  for (const textarea of scope.querySelectorAll('textarea[data-editor]')) {
    if (textarea.sluiceEditor) {
      editors.push(textarea.sluiceEditor);
      continue;
    }
    const editor = attach(textarea, {
      language: textarea.dataset.editor,
      readOnly: textarea.readOnly || truthyData(textarea.dataset.readonly),
      tabIndents: truthyData(textarea.dataset.tabIndents),
    });
    const errorLine = textarea.dataset.errorLine;
    if (errorLine && /^\d+$/.test(errorLine.trim())) {
      editor.markLine(parseInt(errorLine, 10), textarea.dataset.errorMessage || '');
    }
    editors.push(editor);
  }
  return editors;
}

const SluiceEditor = { attach, attachAll };
window.SluiceEditor = SluiceEditor;

if (document.readyState === 'loading') {
  document.addEventListener('DOMContentLoaded', () => attachAll());
} else {
  attachAll();
}
