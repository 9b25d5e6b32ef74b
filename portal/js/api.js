// api.js - the portal's one way to the admin API (/api/v1). Same-origin
// fetch with the session cookie; every change carries the session's CSRF
// token. A 401 means the session ended: the app shows the login again.

let csrf = null;
let onExpired = () => {};

export class ApiError extends Error {
	constructor(status, message, field) {
		super(message);
		this.status = status;
		this.field = field || null;
	}
}

export function setCsrf(token) {
	csrf = token;
}

export function onSessionExpired(fn) {
	onExpired = fn;
}

async function request(method, path, body, accept) {
	const headers = {Accept: accept};
	const opts = {method, headers, credentials: 'same-origin', cache: 'no-store'};
	if (body !== undefined) {
		headers['Content-Type'] = 'application/json';
		opts.body = JSON.stringify(body);
	}
	if (method !== 'GET' && method !== 'HEAD' && csrf)
		headers['X-CSRF-Token'] = csrf;
	let r;
	try {
		r = await fetch('/api/v1/' + path.replace(/^\//, ''), opts);
	} catch (e) {
		throw new ApiError(0, 'moat cannot be reached: ' + e.message);
	}
	if (r.status === 401 && !path.startsWith('auth/')) {
		onExpired();
		throw new ApiError(401, 'Your session has ended. Log in again.');
	}
	return r;
}

async function fail(r) {
	let msg = 'HTTP ' + r.status, field = null;
	try {
		const j = await r.json();
		if (j && j.error) {
			msg = j.error;
			field = j.field || null;
		}
	} catch (e) {
		/* not JSON: keep the status */
	}
	throw new ApiError(r.status, msg, field);
}

// JSON in, JSON out; throws ApiError with the server's message.
export async function api(method, path, body) {
	const r = await request(method, path, body, 'application/json');
	if (!r.ok)
		await fail(r);
	const text = await r.text();
	return text ? JSON.parse(text) : null;
}

// A text answer (a PowerShell script).
export async function apiText(path) {
	const r = await request('GET', path, undefined, 'text/plain');
	if (!r.ok)
		await fail(r);
	return r.text();
}

// A query string from an object, leaving out empty values.
export function qs(params) {
	const u = new URLSearchParams();
	for (const [k, v] of Object.entries(params || {}))
		if (v !== undefined && v !== null && v !== '')
			u.set(k, String(v));
	const s = u.toString();
	return s ? '?' + s : '';
}
