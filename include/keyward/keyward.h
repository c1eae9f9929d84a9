/*
 * keyward — self-hosted API keys and secrets. The whole public API.
 */
#ifndef KEYWARD_H
#define KEYWARD_H

#include <keyward/common.h>
#include <keyward/secret.h>
#include <keyward/key.h>
#include <keyward/scope.h>
#include <keyward/ctx.h>
#include <keyward/record.h>
#include <keyward/verify.h>
#include <keyward/audit.h>
#include <keyward/import.h>
#include <keyward/index.h>
#include <keyward/usage.h>
#include <keyward/token.h>
#include <keyward/secrets.h>

#endif
