// settings.js - "Settings and API tokens": API tokens (a new one shown
// once), the portal's users, settings as keys and values, the policy's
// export and import, and the audit log.

import {api, ApiError, qs} from '../api.js';
import {badge, clear, clearFieldErrors, confirmDialog, copyButton, errorBox, field, fmtTime, h, loading, modal,
        page, showFieldError, table, toast} from '../ui.js';

// A path segment; one of dots only would be read as a relative path.
const enc = (s) => encodeURIComponent(s).replace(/^\.+$/, (m) => m.replace(/\./g, '%2E'));
const SCOPES = [
	['read', 'read: look (every GET but tokens, users, audit, settings, export)'],
	['operate', 'operate: release and delete quarantined mail, queue actions, allow and block lists'],
	['admin', 'admin: rules, domains, tokens, users, audit, settings, import and export'],
];
const AUDIT_PAGE = 25;

function count(n, one, many) {
	return `${n} ${n === 1 ? one : many}`;
}

// Ask, DELETE path, say what happened in words, then show the list again.
async function deleteAsked(question, okLabel, path, done, reload) {
	if (!await confirmDialog(question, okLabel, true))
		return;
	try {
		await api('DELETE', path);
		toast(done);
	} catch (e) {
		toast(e.message, 'error');
	}
	await reload();
}

export async function render(root, params, ctx) {
	const me = ctx && ctx.session ? ctx.session.user : null;
	const sections = [
		['tokens', 'API tokens', tokens],
		['users', 'Users', (box) => users(box, me)],
		['keys', 'Settings', settings],
		['config', 'Configuration export and import', config],
		['audit', 'Audit log', audit],
	];
	const boxes = sections.map(([id, title]) =>
		h('section', {class: 'card', id: 'settings-' + id, 'aria-labelledby': 'settings-' + id + '-h'},
		  h('h2', {id: 'settings-' + id + '-h'}, title)));
	page(root, 'Settings and API tokens',
	     h('nav', {class: 'toc', 'aria-label': 'On this page'},
	       h('ul', null, sections.map(([id, title]) =>
		       h('li', null, h('a', {href: '#/settings/' + id}, title))))),
	     boxes);
	await Promise.all(sections.map(([, , fn], i) => fn(boxes[i]).catch((e) => boxes[i].append(errorBox(e)))));
	if (params && params[0]) {
		const target = document.getElementById('settings-' + params[0]);
		if (target)
			target.scrollIntoView();
	}
}

// A section's body after its heading, replaced on each reload.
function body(box) {
	let b = box.querySelector(':scope > .section-body');
	if (!b) {
		b = h('div', {class: 'section-body'});
		box.append(b);
	}
	return clear(b);
}

// --- API tokens ---

async function tokens(box) {
	const shown = h('div', {id: 'token-new', 'aria-live': 'polite'});
	const listBox = h('div', {id: 'token-list'}, loading());
	const checks = SCOPES.map(([s, label]) => {
		const cb = h('input', {type: 'checkbox', name: 'scope', value: s, id: 'token-scope-' + s, checked: s === 'read'});
		return {s, cb, el: h('label', {class: 'check'}, cb, label)};
	});
	const status = h('div', {'aria-live': 'assertive'});
	const scopeSet = h('fieldset', null, h('legend', null, 'Scopes of the new token'), checks.map((c) => c.el));
	const create = h('button', {id: 'token-create', class: 'primary', type: 'submit'}, 'Create token');
	const form = h('form', {novalidate: true}, scopeSet, status, h('div', {class: 'actions'}, create));

	const load = async () => {
		let items;
		try {
			items = (await api('GET', 'tokens')).items || [];
		} catch (e) {
			clear(listBox).append(errorBox(e));
			return;
		}
		items.sort((a, b) => b.created_ms - a.created_ms);
		clear(listBox).append(table([
			{label: 'Token', render: (t) => h('span', {class: 'mono wrap'}, t.id)},
			{label: 'Scopes', render: (t) => h('span', null, (t.scopes || []).map((s) => [badge(s, 'scope'), ' ']))},
			{label: 'Created', render: (t) => fmtTime(t.created_ms)},
			{label: 'Last used', render: (t) => t.last_used_ms ? fmtTime(t.last_used_ms) : 'never'},
			{label: '', class: 'act', render: (t) => h('button', {type: 'button', class: 'danger', 'aria-label': 'Revoke token ' + t.id,
			                                         onclick: () => revoke(t)}, 'Revoke')},
		], items, {empty: 'No API tokens. Scripts and moatctl need one; the portal does not.', stack: true}).el);
	};
	const revoke = (t) => deleteAsked(`Revoke the token ${t.id}? Whatever uses it is refused from now on.`,
	                                  'Revoke', 'tokens/' + enc(t.id), 'Revoked ' + t.id, load);
	form.addEventListener('submit', async (e) => {
		e.preventDefault();
		clear(status);
		clearFieldErrors(form);
		const scopes = checks.filter((c) => c.cb.checked).map((c) => c.s);
		if (!scopes.length) {
			showFieldError({message: 'Choose at least one scope.', field: 'scopes'}, {scopes: scopeSet}, status);
			return;
		}
		create.disabled = true;
		try {
			const t = await api('POST', 'tokens', {scopes});
			showOnce(shown, t);
			await load();
		} catch (err) {
			showFieldError(err, {scopes: scopeSet}, status);
		} finally {
			create.disabled = false;
		}
	});
	body(box).append(h('p', {class: 'muted'}, 'A token lets a script or moatctl use the admin API ' +
	                   '(Authorization: Bearer …) with the scopes it was given.'),
	                 shown, form, listBox);
	await load();
}

// The new token, once: nothing keeps it but this box, gone when dismissed.
function showOnce(where, t) {
	const secret = h('input', {id: 'token-secret', class: 'mono secret', readonly: true, value: t.token,
	                           'aria-label': 'The new token', spellcheck: 'false', autocomplete: 'off'});
	secret.addEventListener('focus', () => secret.select());
	const done = h('button', {type: 'button', onclick: () => clear(where)}, 'I have stored it');
	clear(where).append(h('div', {class: 'notice once', role: 'alert'},
	                      h('p', null, h('strong', null, 'Copy the new token now: it is shown only this once. '),
	                        'moat keeps only its hash; if it is lost, revoke it and create another.'),
	                      h('div', {class: 'row'}, h('div', {class: 'grow'}, secret), copyButton(t.token, 'Copy token'), done),
	                      h('p', {class: 'muted'}, 'Token ', h('span', {class: 'mono'}, t.id), ', scopes ',
	                        (t.scopes || []).join(', '), '.')));
	secret.focus();
}

// --- users ---

async function users(box, me) {
	const listBox = h('div', {id: 'user-list'}, loading());
	const name = h('input', {id: 'user-name', name: 'name', autocomplete: 'off', spellcheck: 'false', maxlength: 64,
	                         required: true});
	const pass = h('input', {id: 'user-password', name: 'password', type: 'password', autocomplete: 'new-password',
	                         minlength: 10, required: true});
	const status = h('div', {'aria-live': 'assertive'});
	const add = h('button', {id: 'user-add', class: 'primary', type: 'submit'}, 'Add user');
	const form = h('form', {novalidate: true, 'aria-label': 'Add a user'},
	               h('div', {class: 'row'},
	                 field('New user\'s name', name, 'Letters, digits, . _ @ -'),
	                 field('Password', pass, 'At least 10 characters'),
	                 h('div', {class: 'field'}, add)),
	               status);
	const load = async () => {
		let items;
		try {
			items = (await api('GET', 'users')).items || [];
		} catch (e) {
			clear(listBox).append(errorBox(e));
			return;
		}
		items.sort((a, b) => a.name.localeCompare(b.name));
		clear(listBox).append(table([
			{label: 'User', render: (u) => h('span', {class: 'wrap'}, u.name, u.name === me ? h('span', {class: 'muted'}, ' (you)') : null)},
			{label: 'Created', render: (u) => fmtTime(u.created_ms)},
			{label: '', class: 'act', render: (u) => h('div', {class: 'row'},
			                             h('button', {type: 'button', 'aria-label': 'Change the password of ' + u.name,
			                                          onclick: () => password(u)}, 'Change password'),
			                             h('button', {type: 'button', class: 'danger', 'aria-label': 'Delete user ' + u.name,
			                                          onclick: () => remove(u)}, 'Delete'))},
		], items, {empty: 'No users.', stack: true}).el);
	};
	const remove = async (u) => {
		const self = u.name === me;
		const q = self ? `Delete your own user ${u.name}? Your session ends at once and you are logged out.`
		               : `Delete the user ${u.name}? Their sessions end.`;
		await deleteAsked(q, self ? 'Delete me' : 'Delete', 'users/' + enc(u.name), 'Deleted ' + u.name, load);
	};
	const password = (u) => {
		const p1 = h('input', {id: 'pw-new', type: 'password', autocomplete: 'new-password', minlength: 10, required: true});
		const p2 = h('input', {id: 'pw-again', type: 'password', autocomplete: 'new-password', required: true});
		const st = h('div', {'aria-live': 'assertive'});
		const f = h('form', {novalidate: true},
		            u.name === me ? h('p', {class: 'notice'}, 'Your other sessions end; this one goes on.')
		                          : h('p', {class: 'muted'}, 'Their sessions end.'),
		            field('New password', p1, 'At least 10 characters'), field('The same again', p2), st,
		            h('div', {class: 'actions'}, h('button', {class: 'primary', type: 'submit'}, 'Set password'),
		              h('button', {type: 'button', onclick: () => m.close()}, 'Cancel')));
		const m = modal('Password of ' + u.name, f);
		f.addEventListener('submit', async (e) => {
			e.preventDefault();
			clear(st);
			clearFieldErrors(f);
			if (p1.value !== p2.value) {
				showFieldError({message: 'The two passwords differ.', field: 'again'}, {again: p2}, st);
				return;
			}
			try {
				await api('POST', 'users/' + enc(u.name) + '/password', {password: p1.value});
				m.close();
				toast('Password of ' + u.name + ' set');
			} catch (err) {
				showFieldError(err, {password: p1}, st);
			}
		});
		p1.focus();
	};
	form.addEventListener('submit', async (e) => {
		e.preventDefault();
		clear(status);
		clearFieldErrors(form);
		add.disabled = true;
		try {
			await api('POST', 'users', {name: name.value.trim(), password: pass.value});
			toast('Added ' + name.value.trim());
			name.value = pass.value = '';
			await load();
		} catch (err) {
			showFieldError(err, {name, password: pass}, status);
		} finally {
			add.disabled = false;
		}
	});
	body(box).append(h('p', {class: 'muted'}, 'People who log in to this portal. Each has every right.'), listBox,
	                 h('h3', null, 'Add a user'), form);
	await load();
}

// --- settings: keys and values ---

async function settings(box) {
	const listBox = h('div', {id: 'setting-list'}, loading());
	const key = h('input', {id: 'setting-key', name: 'key', autocomplete: 'off', spellcheck: 'false', maxlength: 128,
	                        required: true});
	const value = h('textarea', {id: 'setting-value', name: 'value', rows: 2, spellcheck: 'false', maxlength: 8192});
	const status = h('div', {'aria-live': 'assertive'});
	const set = h('button', {id: 'setting-set', class: 'primary', type: 'submit'}, 'Set');
	const form = h('form', {novalidate: true, 'aria-label': 'Set a setting'},
	               field('Key', key, 'Letters, digits, . _ -'), field('Value', value, 'Ctrl+Enter sets it.'),
	               status, h('div', {class: 'actions'}, set));
	value.addEventListener('keydown', (e) => {
		if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
			e.preventDefault();
			form.requestSubmit();
		}
	});
	const load = async () => {
		let s;
		try {
			s = (await api('GET', 'settings')).settings || {};
		} catch (e) {
			clear(listBox).append(errorBox(e));
			return;
		}
		const rows = Object.keys(s).sort((a, b) => a.localeCompare(b, undefined, {numeric: true}))
		                   .map((k) => ({key: k, value: s[k]}));
		clear(listBox).append(table([
			{label: 'Key', render: (r) => h('span', {class: 'mono wrap'}, r.key)},
			{label: 'Value', render: (r) => h('div', {class: 'mono wrap pre clip'}, r.value)},
			{label: '', class: 'act', render: (r) => h('div', {class: 'row'},
			                             h('button', {type: 'button', 'aria-label': 'Edit setting ' + r.key, onclick: () => {
				                             key.value = r.key;
				                             value.value = r.value;
				                             value.focus();
			                             }}, 'Edit'),
			                             h('button', {type: 'button', class: 'danger', 'aria-label': 'Delete setting ' + r.key,
			                                          onclick: () => remove(r)}, 'Delete'))},
		], rows, {empty: 'No settings stored.', stack: true}).el);
	};
	const remove = (r) => deleteAsked(`Delete the setting ${r.key}?`, 'Delete', 'settings/' + enc(r.key),
	                                  'Deleted ' + r.key, load);
	form.addEventListener('submit', async (e) => {
		e.preventDefault();
		clear(status);
		clearFieldErrors(form);
		const k = key.value.trim();
		if (!k) {
			showFieldError({message: 'Enter a key.', field: 'key'}, {key}, status);
			return;
		}
		set.disabled = true;
		try {
			await api('PUT', 'settings/' + enc(k), {value: value.value});
			toast('Set ' + k);
			key.value = value.value = '';
			await load();
			key.focus();
		} catch (err) {
			showFieldError(err, {key, value}, status);
		} finally {
			set.disabled = false;
		}
	});
	body(box).append(h('p', {class: 'muted'}, 'Values the portal and moat keep by name in the store.'), listBox,
	                 h('h3', null, 'Set a value'), form);
	await load();
}

// --- configuration export and import ---

function saveFile(name, text) {
	const url = URL.createObjectURL(new Blob([text], {type: 'application/json'}));
	const a = h('a', {href: url, download: name, hidden: true});
	document.body.append(a);
	a.click();
	a.remove();
	setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function config(box) {
	const status = h('div', {'aria-live': 'assertive', id: 'config-status'});
	const exportBtn = h('button', {id: 'config-export', type: 'button', onclick: async () => {
		clear(status);
		try {
			const c = await api('GET', 'config/export');
			const d = new Date(), pad = (n) => String(n).padStart(2, '0');
			saveFile(`moat-policy-${d.getFullYear()}${pad(d.getMonth() + 1)}${pad(d.getDate())}.json`,
			         JSON.stringify(c, null, 2) + '\n');
			toast(`Exported ${count(c.rules.length, 'rule', 'rules')} and ${count(c.lists.length, 'list entry', 'list entries')}`);
		} catch (e) {
			status.append(errorBox(e));
		}
	}}, 'Download the policy (JSON)');
	const file = h('input', {id: 'config-file', type: 'file', accept: 'application/json,.json'});
	const importBtn = h('button', {id: 'config-import', class: 'danger', type: 'submit'}, 'Import…');
	const form = h('form', {novalidate: true, 'aria-label': 'Import a policy'},
	               h('div', {class: 'row'}, field('Policy file (from an export)', file), h('div', {class: 'field'}, importBtn)));
	form.addEventListener('submit', async (e) => {
		e.preventDefault();
		clear(status);
		const f = file.files && file.files[0];
		if (!f) {
			status.append(errorBox(new ApiError(0, 'Choose a file first.')));
			file.focus();
			return;
		}
		let doc;
		try {
			doc = JSON.parse(await f.text());
			if (!doc || !Array.isArray(doc.rules) || !Array.isArray(doc.lists))
				throw new Error('it has no "rules" and "lists" arrays');
		} catch (err) {
			status.append(errorBox(new ApiError(0, `${f.name} is not a policy export: ${err.message}`)));
			return;
		}
		let now = '';
		try {
			const c = await api('GET', 'config/export');
			now = ` (now ${count(c.rules.length, 'rule', 'rules')} and ${count(c.lists.length, 'list entry', 'list entries')})`;
		} catch (err) {
			/* the question goes without the numbers */
		}
		const q = `Replace every rule and list entry${now} with the ${count(doc.rules.length, 'rule', 'rules')} ` +
		          `and ${count(doc.lists.length, 'list entry', 'list entries')} of ${f.name}?`;
		if (!await confirmDialog(q, 'Replace', true))
			return;
		importBtn.disabled = true;
		try {
			const r = await api('POST', 'config/import', {rules: doc.rules, lists: doc.lists});
			status.append(h('div', {class: 'success', role: 'status'},
			                `Imported ${count(r.rules, 'rule', 'rules')} and ${count(r.lists, 'list entry', 'list entries')}.`));
			file.value = '';
		} catch (err) {
			if (err.status === 413)
				err = new ApiError(413, `${f.name} is larger than moat takes in one request (admin_request_max).`);
			status.append(errorBox(err));
		} finally {
			importBtn.disabled = false;
		}
	});
	body(box).append(h('p', {class: 'muted'}, 'The rules and the allow and block lists as one JSON file, to keep ' +
	                   'in version control or move to another moat. Importing replaces all of them at once; ' +
	                   'nothing changes if any line is wrong. Domains, users and tokens are not included.'),
	                 h('div', {class: 'actions'}, exportBtn), form, status);
}

// --- audit log ---

async function audit(box) {
	const listBox = h('div', {id: 'audit-list'}, loading());
	const target = h('input', {id: 'audit-target', type: 'search', name: 'target', autocomplete: 'off', spellcheck: 'false'});
	const filter = h('form', {class: 'row', role: 'search', 'aria-label': 'Filter the audit log'},
	                 field('Only entries on this target', target),
	                 h('div', {class: 'field'}, h('button', {type: 'submit'}, 'Show')));
	const pages = []; // the "before" of each page shown so far; null: the newest
	const newer = h('button', {type: 'button', id: 'audit-newer', onclick: () => {
		pages.pop();
		load(pages[pages.length - 1] ?? null, false);
	}}, '← Newer');
	const older = h('button', {type: 'button', id: 'audit-older'}, 'Older →');
	const nav = h('div', {class: 'actions'}, newer, older);
	let next = null;
	older.addEventListener('click', () => load(next, true));
	const load = async (before, push) => {
		let r;
		try {
			r = await api('GET', 'audit' + qs({limit: AUDIT_PAGE, before, target: target.value.trim()}));
		} catch (e) {
			clear(listBox).append(errorBox(e));
			return;
		}
		if (push)
			pages.push(before);
		next = r.next;
		newer.disabled = pages.length <= 1;
		older.disabled = next === null || next === undefined;
		clear(listBox).append(table([
			{label: 'When', render: (a) => h('span', {class: 'nowrap'}, fmtTime(a.time_ms))},
			{label: 'Who', render: (a) => h('span', {class: 'wrap'}, a.who)},
			{label: 'What', render: (a) => h('span', {class: 'mono'}, a.action)},
			{label: 'On', render: (a) => h('span', {class: 'wrap'}, a.target)},
			{label: 'From', render: (a) => h('span', {class: 'mono wrap'}, a.addr)},
		], r.items || [], {empty: target.value.trim() ? 'No entries on this target.' : 'The audit log is empty.', stack: true}).el);
	};
	filter.addEventListener('submit', (e) => {
		e.preventDefault();
		pages.length = 0;
		load(null, true);
	});
	body(box).append(h('p', {class: 'muted'}, 'Every change, newest first: who made it, what, on what, and from where.'),
	                 filter, listBox, nav);
	await load(null, true);
}
