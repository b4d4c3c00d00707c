package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"time"
)

// ErrGone: a one-time secret was already revealed, expired, or never
// existed (the caller can't tell which, by design).
var ErrGone = errors.New("this link was already used or has expired")

func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// PutSecret keeps secret (sealed) until it is revealed with token or
// expires. Only the token's hash is stored.
func (s *Store) PutSecret(ctx context.Context, token, secret, purpose string, expires time.Time) error {
	h := tokenHash(token)
	_, err := s.DB.ExecContext(ctx, s.q(`INSERT INTO ferry_secrets (token_hash, secret, purpose, expires_at) VALUES (?, ?, ?, ?)`),
		h, s.seal.seal(secret, secretAAD(h)), purpose, expires.UnixMilli())
	return err
}

// RevealSecret returns the secret of token once: it is deleted in the same
// statement, so two concurrent reveals can't both get it. Expired secrets
// are deleted on the way.
func (s *Store) RevealSecret(ctx context.Context, token string) (secret, purpose string, err error) {
	now := s.now().UnixMilli()
	if _, err := s.DB.ExecContext(ctx, s.q(`DELETE FROM ferry_secrets WHERE expires_at <= ?`), now); err != nil {
		return "", "", err
	}
	h := tokenHash(token)
	var sealed string
	err = s.DB.QueryRowContext(ctx, s.q(`DELETE FROM ferry_secrets WHERE token_hash = ? AND expires_at > ? RETURNING secret, purpose`),
		h, now).Scan(&sealed, &purpose)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", ErrGone
	}
	if err != nil {
		return "", "", err
	}
	if secret, err = s.seal.open(sealed, secretAAD(h)); err != nil {
		return "", "", err
	}
	return secret, purpose, nil
}
