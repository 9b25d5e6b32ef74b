// app.js - the portal's shell: the session (login, logout, expiry), the
// navigation and a hash router (#/quarantine/ID) that hands each page its
// container. Pages are modules in js/pages/, each exporting
// render(root, params, ctx), loaded when first visited.

import {api, ApiError, onSessionExpired, setCsrf} from './api.js';
import {clear, errorBox, field, h, toast} from './ui.js';

const SECTIONS = [
	{path: 'dashboard', label: 'Dashboard', module: './pages/dashboard.js'},
	{path: 'quarantine', label: 'Quarantine', module: './pages/quarantine.js'},
	{path: 'tracking', label: 'Tracking', module: './pages/tracking.js'},
	{path: 'domains', label: 'Domains', module: './pages/domains.js'},
	{path: 'rules', label: 'Rules', module: './pages/rules.js'},
	{path: 'lists', label: 'Allow & block', module: './pages/lists.js'},
	{path: 'm365', label: 'Microsoft 365', module: './pages/m365.js'},
	{path: 'settings', label: 'Settings', module: './pages/settings.js'},
];

const ctx = {session: null, expiryTimer: null};
const main = () => document.getElementById('main');

function showChrome(on) {
	document.getElementById('nav').hidden = !on;
	document.getElementById('logout').hidden = !on;
	document.getElementById('nav-toggle').hidden = !on;
	document.getElementById('whoami').textContent = on && ctx.session ? ctx.session.user : '';
}

function buildNav() {
	const nav = clear(document.getElementById('nav'));
	nav.append(h('ul', null, SECTIONS.map((s) => h('li', null,
	                                                 h('a', {href: '#/' + s.path, id: 'nav-' + s.path}, s.label)))));
}

function markNav(path) {
	for (const s of SECTIONS) {
		const a = document.getElementById('nav-' + s.path);
		if (a) {
			if (s.path === path)
				a.setAttribute('aria-current', 'page');
			else
				a.removeAttribute('aria-current');
		}
	}
}

// Warn a minute before the session's end; show the login at its end.
function armExpiry() {
	clearTimeout(ctx.expiryTimer);
	if (!ctx.session || !ctx.session.expires_ms)
		return;
	const left = ctx.session.expires_ms - Date.now();
	ctx.expiryTimer = setTimeout(async () => {
		try {
			ctx.session = await api('GET', 'auth/session');
			armExpiry();
		} catch (e) {
			expired();
		}
	}, Math.max(left - 60000, 5000));
}

function expired() {
	if (!ctx.session)
		return;
	ctx.session = null;
	setCsrf(null);
	showChrome(false);
	loginView('Your session has ended. Log in again to go on.');
}

function loginView(message) {
	const root = clear(main());
	document.title = 'Log in · moat';
	const user = h('input', {id: 'login-user', name: 'user', autocomplete: 'username', required: true});
	const pass = h('input', {id: 'login-password', name: 'password', type: 'password',
	                         autocomplete: 'current-password', required: true});
	const status = h('div', {'aria-live': 'assertive'});
	const form = h('form', {class: 'login card', novalidate: true},
	               h('h1', null, 'Log in to moat'),
	               message ? h('p', {class: 'notice'}, message) : null,
	               field('User', user), field('Password', pass), status,
	               h('button', {id: 'login-submit', class: 'primary', type: 'submit'}, 'Log in'));
	form.addEventListener('submit', async (e) => {
		e.preventDefault();
		clear(status);
		try {
			const s = await api('POST', 'auth/login', {user: user.value, password: pass.value});
			await started(s);
		} catch (err) {
			status.append(errorBox(err.status === 401 ? new ApiError(401, 'Wrong user or password.') : err));
			pass.value = '';
			pass.focus();
		}
	});
	root.append(form);
	user.focus();
}

async function started(s) {
	ctx.session = s.csrf_token ? s : await api('GET', 'auth/session');
	setCsrf(ctx.session.csrf_token);
	buildNav();
	showChrome(true);
	armExpiry();
	if (!location.hash || location.hash === '#/' || location.hash === '#')
		location.hash = '#/dashboard';
	else
		route();
}

async function route() {
	if (!ctx.session)
		return;
	const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
	const section = SECTIONS.find((s) => s.path === parts[0]) || SECTIONS[0];
	markNav(section.path);
	const root = clear(main());
	try {
		const mod = await import(section.module);
		await mod.render(root, parts.slice(1), ctx);
	} catch (err) {
		if (err instanceof ApiError && err.status === 401)
			return;
		clear(root).append(h('h1', null, section.label), errorBox(err));
	}
	root.focus({preventScroll: true});
}

async function boot() {
	onSessionExpired(expired);
	document.getElementById('logout').addEventListener('click', async () => {
		try {
			await api('POST', 'auth/logout', {});
		} catch (e) {
			/* the session may be gone already */
		}
		ctx.session = null;
		setCsrf(null);
		clearTimeout(ctx.expiryTimer);
		showChrome(false);
		loginView('You are logged out.');
	});
	const toggle = document.getElementById('nav-toggle');
	toggle.addEventListener('click', () => {
		const nav = document.getElementById('nav');
		const open = !nav.classList.contains('open');
		nav.classList.toggle('open', open);
		toggle.setAttribute('aria-expanded', String(open));
	});
	window.addEventListener('hashchange', () => {
		document.getElementById('nav').classList.remove('open');
		route();
	});
	try {
		const s = await api('GET', 'auth/session');
		if (s && s.kind === 'session')
			return started(s);
	} catch (e) {
		if (!(e instanceof ApiError) || e.status !== 401) {
			clear(main()).append(errorBox(e));
			return;
		}
	}
	loginView();
}

export function section(path) {
	return SECTIONS.find((s) => s.path === path);
}

window.addEventListener('unhandledrejection', (e) => {
	if (e.reason instanceof ApiError && e.reason.status === 401)
		return;
	toast(e.reason && e.reason.message ? e.reason.message : String(e.reason), 'error');
});

boot();
