// rules.js - the administrator rules (docs/SCAN.md "Rules"), lowest
// priority first: reorder, enable and disable, edit their lines, create,
// delete. Every line is checked by moatd with the one grammar; its errors
// name the line ("if[1]"), shown next to it.

import {api} from '../api.js';
import {badge, clear, clearFieldErrors, confirmDialog, emptyState, errorBox, field, h, loading, modal,
        page, showFieldError, toast} from '../ui.js';

const PRIORITY_MAX = 1000000;
// A path segment; one of dots only would be read as a relative path.
const enc = (s) => encodeURIComponent(s).replace(/^\.+$/, (m) => m.replace(/\./g, '%2E'));

const CONDITIONS = [
	['sender-ip CIDR[,CIDR...]', 'the client (or last untrusted hop) is in a range'],
	['sender ADDR|@DOMAIN[,...]', 'the envelope sender or the From address is listed'],
	['recipient ADDR|@DOMAIN[,...]', 'any envelope recipient is listed'],
	['header NAME REGEX', 'a header field matches (POSIX extended, any case)'],
	['attachment GLOB[,...]', 'an attachment\'s file name matches'],
	['verdict deliver|quarantine|reject', 'the verdict of the checks and lists alone'],
	['score >= N, score < N', 'the score so far'],
	['symbol NAME', 'a symbol is present'],
];
const ACTIONS = [
	['score N', 'add N (may be negative)'],
	['quarantine, reject, deliver', 'force that outcome (one per rule)'],
	['set-header NAME: VALUE', 'delivered mail gets the field'],
	['remove-header NAME', 'incoming fields NAME are removed'],
	['skip CHECK', 'spf, dkim, dmarc, arc, dnsbl, attachments, phish, gtube or rspamd'],
];

function ruleBody(r, changes) {
	return Object.assign({priority: r.priority, enabled: r.enabled, stop: r.stop,
	                      if: r.if || [], unless: r.unless || [], then: r.then || []}, changes || {});
}

// A priority p with lo < p < hi (lo -1: the start, hi PRIORITY_MAX + 1: the end), or null.
function between(lo, hi) {
	let p;
	if (lo < 0)
		p = Math.max(0, hi - 10);
	else if (hi > PRIORITY_MAX)
		p = Math.min(PRIORITY_MAX, lo + 10);
	else
		p = Math.floor((lo + hi) / 2);
	return p > lo && p < hi ? p : null;
}

// The PUTs that move rules[i] one place (d -1: earlier, +1: later), in order.
// No two rules may share a priority at any moment, so: one PUT into a gap
// when there is one (the rule moving, or else its neighbour moving the other
// way); without a gap, a swap through a free priority (three PUTs).
export function movePlan(rules, i, d) {
	const j = i + d;
	if (j < 0 || j >= rules.length)
		return [];
	const a = rules[i], b = rules[j];
	const prio = (k) => (k < 0 ? -1 : k >= rules.length ? PRIORITY_MAX + 1 : rules[k].priority);
	let p;
	if (d < 0) {
		if ((p = between(prio(i - 2), b.priority)) !== null)
			return [{rule: a, priority: p}];
		if ((p = between(a.priority, prio(i + 1))) !== null)
			return [{rule: b, priority: p}];
	} else {
		if ((p = between(b.priority, prio(i + 2))) !== null)
			return [{rule: a, priority: p}];
		if ((p = between(prio(i - 1), a.priority)) !== null)
			return [{rule: b, priority: p}];
	}
	const used = new Set(rules.map((r) => r.priority));
	let t = Math.max(...used) + 1;
	if (t > PRIORITY_MAX)
		for (t = 0; used.has(t); t++)
			;
	return [{rule: a, priority: t}, {rule: b, priority: a.priority}, {rule: a, priority: b.priority}];
}

export async function render(root) {
	const list = h('div', {id: 'rule-list'}, loading());
	let rules = [];
	page(root, 'Rules',
	     h('p', {class: 'muted'},
	       'Mail-flow rules run lowest priority first, after the checks and the lists; each matching rule ' +
	       'applies its actions, and a rule with "stop" ends the run. A quarantine from one rule and a ' +
	       'deliver from another quarantine: give the deciding rule "stop".'),
	     h('div', {class: 'actions'},
	       h('button', {id: 'rule-add', class: 'primary', type: 'button',
	                    onclick: () => editor(null, rules, reload)}, 'New rule')),
	     list, grammarHelp());

	async function reload(focusName, focusWhat) {
		try {
			rules = ((await api('GET', 'rules')).items || []).sort((a, b) => a.priority - b.priority);
		} catch (e) {
			clear(list).append(errorBox(e));
			return;
		}
		clear(list).append(ruleList(rules, reload));
		if (focusName) {
			const li = [...list.querySelectorAll('li.rule')].find((x) => x.dataset.name === focusName);
			const btn = li && (li.querySelector(`[data-act="${focusWhat}"]:not(:disabled)`) ||
			                   li.querySelector('[data-act="edit"]'));
			if (btn)
				btn.focus();
		}
	}
	await reload();
}

function ruleList(rules, reload) {
	if (!rules.length)
		return emptyState('No rules yet. Mail gets the verdict of the checks and the lists alone.');
	const busy = (on) => {
		for (const b of document.querySelectorAll('#rule-list button'))
			b.disabled = on || b.dataset.never === '1';
	};
	const move = async (i, d) => {
		busy(true);
		const plan = movePlan(rules, i, d);
		try {
			for (const step of plan)
				await api('PUT', 'rules/' + enc(step.rule.name), ruleBody(step.rule, {priority: step.priority}));
			toast(`Moved ${rules[i].name} ${d < 0 ? 'up' : 'down'}`);
		} catch (e) {
			toast('The rules could not be reordered: ' + e.message, 'error');
		}
		await reload(rules[i].name, d < 0 ? 'up' : 'down');
	};
	const toggle = async (r) => {
		busy(true);
		try {
			await api('PUT', 'rules/' + enc(r.name), ruleBody(r, {enabled: !r.enabled}));
			toast((r.enabled ? 'Disabled ' : 'Enabled ') + r.name);
		} catch (e) {
			toast(e.message, 'error');
		}
		await reload(r.name, 'toggle');
	};
	const remove = async (r) => {
		if (!await confirmDialog(`Delete the rule ${r.name}?`, 'Delete', true))
			return;
		try {
			await api('DELETE', 'rules/' + enc(r.name));
			toast('Deleted ' + r.name);
		} catch (e) {
			toast(e.message, 'error');
		}
		await reload();
	};
	return h('ol', {class: 'rules', 'aria-label': 'Rules, in the order they run'},
	         rules.map((r, i) => h('li', {class: 'card rule' + (r.enabled ? '' : ' off'), dataset: {name: r.name}},
	                               h('div', {class: 'rule-head'},
	                                 h('span', {class: 'prio', title: 'Priority'}, String(r.priority)),
	                                 h('h2', {class: 'wrap'}, r.name),
	                                 r.enabled ? badge('enabled', 'ok') : badge('disabled', 'expired'),
	                                 r.stop ? badge('stop', 'held') : null),
	                               h('dl', {class: 'kv'},
	                                 h('dt', null, 'If'), h('dd', null, lines(r.if, 'every message')),
	                                 r.unless && r.unless.length ? [h('dt', null, 'Unless'), h('dd', null, lines(r.unless))] : null,
	                                 h('dt', null, 'Then'), h('dd', null, lines(r.then))),
	                               h('div', {class: 'actions'},
	                                 h('button', {type: 'button', dataset: {act: 'up', never: i === 0 ? '1' : '0'}, disabled: i === 0,
	                                              'aria-label': 'Move ' + r.name + ' up', onclick: () => move(i, -1)}, '↑ Up'),
	                                 h('button', {type: 'button', dataset: {act: 'down', never: i === rules.length - 1 ? '1' : '0'},
	                                              disabled: i === rules.length - 1,
	                                              'aria-label': 'Move ' + r.name + ' down', onclick: () => move(i, 1)}, '↓ Down'),
	                                 h('button', {type: 'button', dataset: {act: 'toggle'}, 'aria-pressed': String(!r.enabled),
	                                              'aria-label': (r.enabled ? 'Disable ' : 'Enable ') + r.name,
	                                              onclick: () => toggle(r)}, r.enabled ? 'Disable' : 'Enable'),
	                                 h('button', {type: 'button', dataset: {act: 'edit'}, 'aria-label': 'Edit ' + r.name,
	                                              onclick: () => editor(r, rules, reload)}, 'Edit'),
	                                 h('button', {type: 'button', class: 'danger', dataset: {act: 'delete'},
	                                              'aria-label': 'Delete ' + r.name, onclick: () => remove(r)}, 'Delete')))));
}

function lines(items, none) {
	if (!items || !items.length)
		return h('span', {class: 'muted'}, none || '–');
	return h('ul', {class: 'lines'}, items.map((l) => h('li', {class: 'mono'}, l)));
}

function grammarHelp() {
	const tbl = (rows) => h('table', null, h('tbody', null,
	                                           rows.map(([a, b]) => h('tr', null, h('td', {class: 'mono'}, a), h('td', null, b)))));
	return h('details', {class: 'card help'}, h('summary', null, 'The rule grammar'),
	         h('p', null, 'One condition or action a line. Every "if" must match and no "unless" may match; ' +
	           '@domain covers its subdomains; lists are separated by commas.'),
	         h('h3', null, 'Conditions (if, unless)'), tbl(CONDITIONS),
	         h('h3', null, 'Actions (then)'), tbl(ACTIONS),
	         h('p', {class: 'muted'}, 'Header actions may not name moat\'s own fields, Received, Authentication-Results, ' +
	           'MIME-Version or Content-*. A skip in a rule with verdict, score or symbol conditions is refused.'));
}

// The lines of a textarea, without blank ones; nos: each one's line number.
function textLines(ta) {
	const out = [], nos = [];
	ta.value.split('\n').forEach((l, k) => {
		if (l.trim()) {
			out.push(l.trim());
			nos.push(k + 1);
		}
	});
	return {lines: out, nos};
}

function editor(r, rules, reload) {
	const editing = !!r;
	const nextPrio = rules.length ? Math.min(PRIORITY_MAX, Math.max(...rules.map((x) => x.priority)) + 10) : 10;
	const name = h('input', {id: 'rule-name', name: 'name', required: true, maxlength: 64, autocomplete: 'off',
	                         spellcheck: 'false', value: r ? r.name : ''});
	const prio = h('input', {id: 'rule-priority', name: 'priority', type: 'number', min: 0, max: PRIORITY_MAX, step: 1,
	                         required: true, value: String(r ? r.priority : nextPrio)});
	const enabled = h('input', {type: 'checkbox', id: 'rule-enabled', checked: r ? r.enabled : true});
	const stop = h('input', {type: 'checkbox', id: 'rule-stop', checked: r ? r.stop : false});
	const area = (id, v, ph) => {
		const ta = h('textarea', {id, name: id.replace('rule-', ''), rows: Math.max(2, (v || []).length + 1),
		                          spellcheck: 'false', placeholder: ph});
		ta.value = (v || []).join('\n');
		return ta;
	};
	const ifs = area('rule-if', r && r.if, 'sender @partner.example\nheader Subject ^(invoice|statement)');
	const unless = area('rule-unless', r && r.unless, 'recipient ceo@example.com');
	const then = area('rule-then', r && r.then, 'set-header X-Partner: yes\nscore -2');
	const status = h('div', {'aria-live': 'assertive'});
	const save = h('button', {id: 'rule-save', class: 'primary', type: 'submit'}, editing ? 'Save' : 'Create rule');
	const form = h('form', {novalidate: true},
	               editing ? null : field('Name', name, '1 to 64 letters, digits, blanks, -, _ or .'),
	               h('div', {class: 'row'},
	                 field('Priority', prio, 'Lowest runs first; unique'),
	                 h('label', {class: 'check'}, enabled, 'Enabled'),
	                 h('label', {class: 'check'}, stop, 'Stop: no later rule runs when this one matches')),
	               field('If (every line must match; none: every message)', ifs),
	               field('Unless (no line may match)', unless),
	               field('Then (at least one action)', then, 'Ctrl+Enter saves.'),
	               status,
	               h('div', {class: 'actions'}, save, h('button', {type: 'button', onclick: () => m.close()}, 'Cancel')),
	               grammarHelp());
	const m = modal(editing ? 'Edit rule ' + r.name : 'New rule', form);
	for (const ta of [ifs, unless, then])
		ta.addEventListener('keydown', (e) => {
			if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
				e.preventDefault();
				form.requestSubmit();
			}
		});
	const inputs = {name: editing ? null : name, priority: prio, enabled, stop, if: ifs, unless, then, rule: null};
	form.addEventListener('submit', async (e) => {
		e.preventDefault();
		clear(status);
		clearFieldErrors(form);
		const n = name.value.trim();
		if (!n) {
			showFieldError({message: 'Enter a name for the rule.', field: 'name'}, inputs, status);
			return;
		}
		const parts = {if: textLines(ifs), unless: textLines(unless), then: textLines(then)};
		const body = {priority: prio.value === '' ? NaN : Number(prio.value), enabled: enabled.checked, stop: stop.checked,
		              if: parts.if.lines, unless: parts.unless.lines, then: parts.then.lines};
		if (!editing && rules.some((x) => x.name === n)) {
			showFieldError({message: `A rule named ${n} exists: choose another name, or edit that one.`, field: 'name'},
			               inputs, status);
			return;
		}
		if (!Number.isInteger(body.priority)) {
			showFieldError({message: `The priority is a whole number from 0 to ${PRIORITY_MAX}.`, field: 'priority'},
			               inputs, status);
			return;
		}
		save.disabled = true;
		try {
			await api('PUT', 'rules/' + enc(n), body);
			m.close();
			toast((editing ? 'Saved ' : 'Created ') + n);
			await reload(n, 'edit');
		} catch (err) {
			// "if[1]": the second line sent from "if", on the textarea's line nos[1]
			const lm = /^(if|unless|then)\[(\d+)\]$/.exec(err.field || '');
			let text = null;
			if (lm) {
				const p = parts[lm[1]], k = Number(lm[2]);
				text = `Line ${p.nos[k] || k + 1} (${p.lines[k] || ''}): ${err.message}`;
			}
			showFieldError(err, inputs, status, text);
		} finally {
			save.disabled = false;
		}
	});
	(editing ? ifs : name).focus();
}
