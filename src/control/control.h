/*
 * control.h - moatd's local control socket: one JSON object per line in,
 * one per line out, over a Unix socket that only the moat user and root
 * can reach. moatctl speaks it; the admin HTTP API calls the same
 * commands from its own thread with control_call().
 *
 * Request:  {"cmd": "queue.hold", "id": "..."}
 * Response: {"ok": true, ...}  or  {"ok": false, "code": 404, "error": "..."}
 * (codes as in HTTP: 400 bad request, 404 unknown id, 409 conflict).
 */
#ifndef MOAT_CONTROL_H
#define MOAT_CONTROL_H

#include <jansson.h>
#include <stddef.h>

struct event_base;
struct control;

#define CONTROL_LINE_MAX    (64 * 1024) /* one request */
#define CONTROL_CLIENTS_MAX 16

/*
 * A command: fills *result (an object, may stay NULL) and returns 0, or
 * returns an error code (400, 404, 409, 500) with a message in err.
 */
typedef int (*control_fn)(void *arg, json_t *req, json_t **result, char *err, size_t errsize);

/* Listen on path (an old socket there is replaced). NULL and err on failure. */
struct control *control_new(struct event_base *base, const char *path, char *err, size_t errsize);
void control_register(struct control *c, const char *name, const char *help, control_fn fn,
                      void *arg);
/*
 * Run the command req names ({"cmd": ..., ...}) on the control's own loop
 * and wait for it, from any other thread (never from that loop: it would
 * wait for itself). 0 with the result object in *resp (the caller's
 * reference, never NULL), or the command's error code with a message in
 * err; 504 when the loop did not answer within CONTROL_CALL_TIMEOUT_MS.
 */
#define CONTROL_CALL_TIMEOUT_MS 5000
int control_call(struct control *c, json_t *req, json_t **resp, char *err, size_t errsize);
/* On its loop's thread, once no control_call() can be waiting (the API is stopped). */
void control_free(struct control *c);

#endif
