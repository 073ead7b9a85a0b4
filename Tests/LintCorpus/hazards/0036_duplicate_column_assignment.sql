UPDATE accounts SET note = 'a', note = 'b' WHERE id = 1;
